// Package backup reads and writes Gatehouse backup files: a tar.gz in the
// style of Consul's and Nomad's snapshot archives, holding
//
//	meta.json   what the backup is (format version, log index, time, node, counts)
//	state.bin   the configuration at that index (snapshot header and entities)
//	history.bin the event history up to that index
//	SHA256SUMS  the SHA-256 of the three files above, in sha256sum's format
//
// so an operator can inspect one with tar and check it with sha256sum -c.
// Concatenated, state.bin and history.bin are a Raft snapshot of the
// machine without its trailing checksum.
package backup

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/pgzip"
)

// Format and Version identify the archive layout.
const (
	Format  = "gatehouse-backup"
	Version = 1
)

// Meta is meta.json.
type Meta struct {
	Format           string `json:"format"`
	Version          int    `json:"version"`
	Index            uint64 `json:"index"`
	Time             string `json:"time"` // when the backup was taken
	Node             string `json:"node"` // node that wrote it
	GatehouseVersion string `json:"gatehouse_version"`
	Entities         int    `json:"entities"`
	Events           int    `json:"events"`
}

var members = []string{"meta.json", "state.bin", "history.bin"}

// Source is what an archive is written from: the state part, small
// enough to spool, and the history part, whose size is known before it
// is written so that it streams straight into the archive.
type Source interface {
	WriteState(w io.Writer) error
	HistorySize() (size int64, events int, err error)
	WriteHistory(w io.Writer) (events int, err error)
}

// Write writes an archive of src to w. Only the state is spooled (tar
// needs each member's size up front); the history goes from the store to
// w in one pass.
func Write(w io.Writer, meta Meta, src Source) error {
	state, err := os.CreateTemp("", "gatehouse-backup-state-*")
	if err != nil {
		return fmt.Errorf("backup spool: %w", err)
	}
	defer os.Remove(state.Name())
	defer state.Close()
	bw := bufio.NewWriterSize(state, 256<<10)
	if err := src.WriteState(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("backup spool: %w", err)
	}
	stateSize, err := state.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	if _, err := state.Seek(0, io.SeekStart); err != nil {
		return err
	}
	historySize, events, err := src.HistorySize()
	if err != nil {
		return err
	}
	meta.Format, meta.Version, meta.Events = Format, Version, events
	if meta.Time == "" {
		meta.Time = time.Now().UTC().Format(time.RFC3339Nano)
	}
	mb, _ := json.MarshalIndent(meta, "", "  ")

	// BestSpeed: a history compresses well even so, and backups of a
	// million events must take seconds, not minutes. pgzip compresses
	// 1 MB blocks on every core into one ordinary gzip stream: single
	// threaded, compression was three quarters of a backup's time.
	gz, _ := pgzip.NewWriterLevel(w, pgzip.BestSpeed)
	tw := tar.NewWriter(gz)
	var sums strings.Builder
	add := func(name string, size int64, write func(io.Writer) error) error {
		h := sha256.New()
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: size, ModTime: time.Now()}); err != nil {
			return fmt.Errorf("backup %s: %w", name, err)
		}
		if err := write(io.MultiWriter(tw, h)); err != nil {
			return fmt.Errorf("backup %s: %w", name, err)
		}
		fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(h.Sum(nil)), name)
		return nil
	}
	copyFrom := func(r io.Reader) func(io.Writer) error {
		return func(w io.Writer) error { _, err := io.Copy(w, r); return err }
	}
	if err := add("meta.json", int64(len(mb)), copyFrom(bytes.NewReader(mb))); err != nil {
		return err
	}
	if err := add("state.bin", stateSize, copyFrom(bufio.NewReaderSize(state, 256<<10))); err != nil {
		return err
	}
	if err := add("history.bin", historySize, func(w io.Writer) error {
		n, err := src.WriteHistory(w)
		if err == nil && n != events {
			err = fmt.Errorf("the history changed while it was written (%d records, then %d)", events, n)
		}
		return err
	}); err != nil {
		return err
	}
	if err := add("SHA256SUMS", int64(sums.Len()), copyFrom(strings.NewReader(sums.String()))); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// Check reads a whole archive from r in one pass, without unpacking it:
// every member against SHA256SUMS, the format version, and the state and
// history parts through the given verifiers (each must read its part to
// the end). It is how a backup being downloaded is checked as it arrives.
func Check(r io.Reader, verifyState, verifyHistory func(io.Reader) error) (Meta, error) {
	var meta Meta
	err := walk(r, func(name string, body io.Reader) error {
		switch name {
		case "meta.json":
			return readMeta(body, &meta)
		case "state.bin":
			return verifyState(body)
		}
		return verifyHistory(body)
	})
	return meta, err
}

// walk reads an archive's members in order, giving fn each of meta.json,
// state.bin and history.bin (what fn leaves unread is read for it), then
// checks them against SHA256SUMS and reads the gzip stream to its end:
// nothing may follow.
func walk(r io.Reader, fn func(name string, body io.Reader) error) error {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return errors.New("not a Gatehouse backup (not gzip)")
	}
	tr := tar.NewReader(gz)
	got := map[string]string{}
	var sums []byte
	for i := 0; ; i++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("backup is truncated or corrupt: %w", err)
		}
		if i > 8 {
			return errors.New("backup has unexpected members")
		}
		switch h.Name {
		case "SHA256SUMS":
			if sums, err = io.ReadAll(io.LimitReader(tr, 1<<16)); err != nil {
				return fmt.Errorf("backup is truncated: %w", err)
			}
			continue
		case "meta.json", "state.bin", "history.bin":
		default:
			return fmt.Errorf("backup has an unexpected member %q", h.Name)
		}
		sum := sha256.New()
		body := io.TeeReader(tr, sum)
		if err := fn(h.Name, body); err != nil {
			return fmt.Errorf("backup %s: %w", h.Name, err)
		}
		if _, err := io.Copy(io.Discard, body); err != nil {
			return fmt.Errorf("backup is truncated: %s: %w", h.Name, err)
		}
		got[h.Name] = hex.EncodeToString(sum.Sum(nil))
	}
	if _, err := io.Copy(io.Discard, gz); err != nil {
		return fmt.Errorf("backup is truncated or has trailing data: %w", err)
	}
	return checkSums(got, sums)
}

func readMeta(r io.Reader, meta *Meta) error {
	mb, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return fmt.Errorf("backup is truncated: %w", err)
	}
	if err := json.Unmarshal(mb, meta); err != nil || meta.Format != Format {
		return errors.New("backup has no valid meta.json")
	}
	if meta.Version != Version {
		return fmt.Errorf("backup format version %d is not supported (this Gatehouse reads version %d)", meta.Version, Version)
	}
	return nil
}

func checkSums(got map[string]string, sums []byte) error {
	if sums == nil {
		return errors.New("backup has no SHA256SUMS")
	}
	want := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			want[f[1]] = f[0]
		}
	}
	for _, name := range members {
		if got[name] == "" {
			return fmt.Errorf("backup lacks %s", name)
		}
		if got[name] != want[name] {
			return fmt.Errorf("backup checksum mismatch for %s: the file is altered", name)
		}
	}
	return nil
}

// Archive is a verified backup unpacked into a temporary directory.
type Archive struct {
	Meta Meta
	dir  string
}

// Open reads a backup, checks every member against SHA256SUMS and the
// format version, and unpacks it. Nothing is trusted before all checks
// pass; the caller must Close the archive.
func Open(r io.Reader) (*Archive, error) {
	dir, err := os.MkdirTemp("", "gatehouse-restore-*")
	if err != nil {
		return nil, err
	}
	a := &Archive{dir: dir}
	err = walk(r, func(name string, body io.Reader) error {
		if name == "meta.json" {
			return readMeta(body, &a.Meta)
		}
		f, err := os.Create(dir + "/" + name)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if err == nil && a.Meta.Format == "" {
		err = errors.New("backup lacks meta.json")
	}
	if err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// WriteSnapshot writes the backup as one snapshot stream (state, history
// and their SHA-256), the form Raft installs, to a file in the archive's
// directory and returns it, rewound, with its size.
func (a *Archive) WriteSnapshot() (*os.File, int64, error) {
	out, err := os.Create(a.dir + "/snapshot")
	if err != nil {
		return nil, 0, err
	}
	sum := sha256.New()
	w := io.MultiWriter(out, sum)
	for _, name := range []string{"state.bin", "history.bin"} {
		f, err := os.Open(a.dir + "/" + name)
		if err != nil {
			out.Close()
			return nil, 0, err
		}
		_, err = io.Copy(w, f)
		f.Close()
		if err != nil {
			out.Close()
			return nil, 0, err
		}
	}
	if _, err := out.Write(sum.Sum(nil)); err != nil {
		out.Close()
		return nil, 0, err
	}
	size, err := out.Seek(0, io.SeekCurrent)
	if err == nil {
		_, err = out.Seek(0, io.SeekStart)
	}
	if err != nil {
		out.Close()
		return nil, 0, err
	}
	return out, size, nil
}

// Close removes the unpacked files.
func (a *Archive) Close() error { return os.RemoveAll(a.dir) }
