package syncer_test

import (
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/syncer"
)

func TestSmokeFullThenDelta(t *testing.T) {
	b := newBundle(t, opts{users: 50, groups: 5})
	id := b.save(defaults())
	r, err := b.eng.GetRun(t.Context(), "default", id)
	if err != nil {
		t.Fatal(err)
	}
	b.mustSucceed(r)
	t.Logf("run: %+v", r)
	users := b.tenant.UserList()
	if got := len(b.byEntra()); got != len(users) {
		t.Fatalf("synced %d, users %d", got, len(users))
	}
	r2 := b.mustSucceed(b.run(syncer.RunOptions{}))
	if r2.Read != "delta" || r2.Created != 0 {
		t.Fatalf("second run: %+v", r2)
	}
	t.Logf("run2: %+v", r2)
}
