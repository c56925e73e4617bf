//go:build !linux

package log

// ReleaseMapped is a no-op off Linux (see release_linux.go).
func (h *History) ReleaseMapped() error { return nil }
