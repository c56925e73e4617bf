package conformance

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// page is one page of a Kong collection.
type page struct {
	data    []map[string]any
	offset  any
	hasOff  bool
	next    any
	hasNext bool
}

func getPage(t *testing.T, n *harness.Node, path string) (*harness.Response, page) {
	t.Helper()
	r := harness.Get(t, n.Admin(path))
	harness.ExpectStatus(t, r, http.StatusOK)
	m := r.JSON(t)
	var p page
	raw, ok := m["data"].([]any)
	if !ok {
		t.Fatalf("GET %s: data is %#v, want an array", path, m["data"])
	}
	for _, e := range raw {
		em, _ := e.(map[string]any)
		p.data = append(p.data, em)
	}
	p.offset, p.hasOff = m["offset"]
	p.next, p.hasNext = m["next"]
	if !p.hasNext {
		t.Errorf("GET %s: no next key (Kong always sends next, null on the last page): %s", path, r)
	}
	return r, p
}

// walk follows next links from first and returns the page sizes and the
// ids seen.
func walk(t *testing.T, n *harness.Node, first string, check func(i int, p page)) ([]int, []string) {
	t.Helper()
	var sizes []int
	var ids []string
	path := first
	for i := 0; i < 20; i++ {
		_, p := getPage(t, n, path)
		sizes = append(sizes, len(p.data))
		for _, e := range p.data {
			ids = append(ids, idOf(e))
		}
		if check != nil {
			check(i, p)
		}
		next, _ := p.next.(string)
		if p.next == nil || next == "" {
			if p.hasOff {
				t.Errorf("last page of %s carries an offset %#v; Kong omits it", first, p.offset)
			}
			return sizes, ids
		}
		if off, _ := p.offset.(string); off == "" {
			t.Errorf("page %d of %s has next %q but no offset", i, first, next)
		}
		path = next
	}
	t.Fatalf("more than 20 pages following %s", first)
	return nil, nil
}

// TestAdminPagination covers behaviours 4, 5, 17 and 23 on a fresh node
// (so collection counts are exact).
func TestAdminPagination(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "conf-pagination"})

	t.Run("B05_empty_collections", func(t *testing.T) {
		for _, p := range []string{"/services", "/routes", "/consumers", "/plugins", "/upstreams", "/key-auths"} {
			r := harness.Get(t, n.Admin(p))
			harness.CheckStatus(t, r, http.StatusOK)
			harness.JSONEqual(t, r, `{"data":[],"next":null}`)
			if !strings.Contains(strings.ReplaceAll(r.Text(), " ", ""), `"data":[]`) {
				t.Errorf("GET %s: data not serialised as an empty array: %s", p, r)
			}
		}
	})

	var created []string
	t.Run("B04_paging_size_3", func(t *testing.T) {
		for i := 0; i < 10; i++ {
			created = append(created, idOf(create(t, n, "/services", map[string]any{"name": fmt.Sprintf("page-%02d", i), "host": "page.test"})))
		}
		sizes, ids := walk(t, n, "/services?size=3", func(i int, p page) {
			if next, ok := p.next.(string); ok && next != "" {
				if !strings.HasPrefix(next, "/services?") || !strings.Contains(next, "size=3") || !strings.Contains(next, "offset=") {
					t.Errorf("page %d: next = %q, want /services?offset=…&size=3", i, next)
				}
			}
		})
		if fmt.Sprint(sizes) != "[3 3 3 1]" {
			t.Errorf("page sizes %v, want [3 3 3 1]", sizes)
		}
		got := append([]string(nil), ids...)
		want := append([]string(nil), created...)
		sort.Strings(got)
		sort.Strings(want)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("paging returned ids %v, want each of the 10 services once: %v", got, want)
		}

		// Default size 100 returns all ten on one page.
		_, p := getPage(t, n, "/services")
		if len(p.data) != 10 || p.next != nil || p.hasOff {
			t.Errorf("GET /services: %d entities, next %#v, offset present %v; want 10, null, absent", len(p.data), p.next, p.hasOff)
		}
		_, p = getPage(t, n, "/services?size=1000")
		if len(p.data) != 10 {
			t.Errorf("size=1000: %d entities, want 10", len(p.data))
		}
		// Unknown query arguments are ignored.
		_, p = getPage(t, n, "/services?foo=bar")
		if len(p.data) != 10 {
			t.Errorf("?foo=bar: %d entities, want 10", len(p.data))
		}
	})

	t.Run("B05_empty_nested_collection", func(t *testing.T) {
		if len(created) == 0 {
			t.Skip("no service")
		}
		for _, p := range []string{"/services/" + created[0] + "/routes", "/services/" + created[0] + "/plugins"} {
			r := harness.Get(t, n.Admin(p))
			harness.CheckStatus(t, r, http.StatusOK)
			harness.JSONEqual(t, r, `{"data":[],"next":null}`)
		}
	})

	t.Run("B17_bad_size_and_offset", func(t *testing.T) {
		for _, p := range []string{"/routes?size=x", "/services?size=x"} {
			r := harness.Get(t, n.Admin(p))
			harness.CheckStatus(t, r, http.StatusBadRequest)
			harness.JSONEqual(t, r, `{"code":9,"name":"invalid size","message":"size must be a number"}`)
		}
		for _, p := range []string{"/routes?size=0", "/services?size=1001", "/consumers?size=-1"} {
			r := harness.Get(t, n.Admin(p))
			harness.CheckKongError(t, r, 400, 9, "invalid size", "size must be an integer between 1 and 1000")
		}
		for _, p := range []string{"/routes?offset=x", "/services?offset=x"} {
			r := harness.Get(t, n.Admin(p))
			harness.CheckStatus(t, r, http.StatusBadRequest)
			harness.JSONEqual(t, r, `{"code":7,"name":"invalid offset","message":"'x' is not a valid offset: bad base64 encoding"}`)
		}
	})

	t.Run("B23_tag_filters", func(t *testing.T) {
		mk := func(tags ...any) string {
			return idOf(create(t, n, "/services", map[string]any{"host": "tags.test", "tags": tags}))
		}
		ab := mk("t23a", "t23b")
		a := mk("t23a")
		b := mk("t23b")
		c := mk("t23c")
		_ = c
		list := func(q string) []string {
			t.Helper()
			r := harness.Get(t, n.Admin("/services?tags="+q))
			harness.ExpectStatus(t, r, http.StatusOK)
			ids := listIDs(t, r)
			sort.Strings(ids)
			return ids
		}
		sorted := func(s ...string) []string { sort.Strings(s); return s }
		if got, want := list("t23a,t23b"), sorted(ab); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("tags=t23a,t23b (AND): %v, want %v", got, want)
		}
		if got, want := list(url.QueryEscape("t23a/t23b")), sorted(ab, a, b); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("tags=t23a/t23b (OR): %v, want %v", got, want)
		}
		if got, want := list("t23a/t23b"), sorted(ab, a, b); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("tags=t23a/t23b unescaped (OR): %v, want %v", got, want)
		}
		if got := list("t23-none"); len(got) != 0 {
			t.Errorf("tags=t23-none: %v, want none", got)
		}

		r := harness.Get(t, n.Admin("/services?tags=t23a,t23b/t23c"))
		harness.CheckKongError(t, r, 400, 11, "invalid options", "invalid option (tags: invalid filter syntax)")
		r = harness.Get(t, n.Admin("/services?tags="))
		harness.CheckKongError(t, r, 400, 11, "invalid options", "invalid option (tags: cannot be null)")
		r = harness.Get(t, n.Admin("/services?tags=a,b,c,d,e,f"))
		harness.CheckStatus(t, r, http.StatusBadRequest)
		if !strings.Contains(r.Text(), "cannot query more than 5 tags") {
			t.Errorf("six tags: want 'cannot query more than 5 tags': %s", r)
		}

		// next keeps the tag filter and the size.
		sizes, ids := walk(t, n, "/services?tags=t23a&size=1", func(i int, p page) {
			if next, ok := p.next.(string); ok && next != "" {
				if !strings.Contains(next, "tags=t23a") || !strings.Contains(next, "size=1") {
					t.Errorf("page %d: next = %q, want it to keep tags=t23a and size=1", i, next)
				}
			}
		})
		sort.Strings(ids)
		if fmt.Sprint(sizes) != "[1 1]" || fmt.Sprint(ids) != fmt.Sprint(sorted(ab, a)) {
			t.Errorf("tags=t23a&size=1 pages %v ids %v, want [1 1] over %v", sizes, ids, sorted(ab, a))
		}

		// /tags/{tag} lists the tagged entities.
		r = harness.Get(t, n.Admin("/tags/t23a"))
		if harness.CheckStatus(t, r, http.StatusOK) {
			var got []string
			for _, row := range r.Data(t) {
				if row["tag"] != "t23a" || row["entity_name"] != "services" {
					t.Errorf("/tags/t23a row %v, want tag t23a and entity_name services", row)
				}
				s, _ := row["entity_id"].(string)
				got = append(got, s)
			}
			sort.Strings(got)
			if fmt.Sprint(got) != fmt.Sprint(sorted(ab, a)) {
				t.Errorf("/tags/t23a entity ids %v, want %v", got, sorted(ab, a))
			}
		}
	})
}
