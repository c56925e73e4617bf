package cow

import (
	"strconv"
	"testing"
)

// A map built presized reads like any other, and edits derived from it
// leave it as it was.
func TestSizedMapIsAnImmutableMap(t *testing.T) {
	const n = 5000
	e := Sized[int](n)
	for i := range n + 100 { // a little past the size it was made for
		e.Set(strconv.Itoa(i), i)
	}
	e.Del("7")
	m := e.Done()
	for i := range n + 100 {
		v, ok := m.Get(strconv.Itoa(i))
		if want := i != 7; ok != want || ok && v != i {
			t.Fatalf("Get(%d) = %d, %v", i, v, ok)
		}
	}
	d := m.Edit()
	d.Set("1", -1)
	d.Del("2")
	d.Set("new", 1)
	m2 := d.Done()
	if v, _ := m.Get("1"); v != 1 {
		t.Errorf("an edit of the map changed it: 1 → %d", v)
	}
	if _, ok := m.Get("2"); !ok {
		t.Error("an edit of the map deleted from it")
	}
	if _, ok := m.Get("new"); ok {
		t.Error("an edit of the map added to it")
	}
	if v, _ := m2.Get("1"); v != -1 {
		t.Errorf("the edit lost its write: 1 → %d", v)
	}
	count := 0
	m.Each(func(string, int) { count++ })
	if count != n+99 {
		t.Errorf("Each visited %d keys, want %d", count, n+99)
	}
}
