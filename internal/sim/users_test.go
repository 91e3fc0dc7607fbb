package sim

import (
	"testing"
)

func TestUsersPagingVisitsEachUserOnce(t *testing.T) {
	b := newBundle(t, nil)
	seen := map[string]int{}
	url := "/v1.0/users?$select=id,displayName&$top=37"
	pages := 0
	for url != "" {
		r := b.get(url)
		mustStatus(t, r, 200)
		m := r.json(t)
		for _, v := range m["value"].([]any) {
			seen[v.(map[string]any)["id"].(string)]++
		}
		url, _ = m["@odata.nextLink"].(string)
		pages++
	}
	if len(seen) != 300 {
		t.Fatalf("saw %d users, want 300", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("user %s seen %d times", id, n)
		}
	}
	if pages != 9 {
		t.Fatalf("pages = %d, want 9", pages)
	}
}
