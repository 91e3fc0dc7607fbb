package contactsync_test

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/contactsync"
	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// A contacts sync of a PBX waits its turn across instances: while another
// instance holds the PBX's lease, Run answers ErrRunning (and AfterUserSync
// leaves it to that run); an expired lease (its instance stopped) is taken
// over; a finished run removes its lease.
func TestContactsLeaseOneRunPerPBX(t *testing.T) {
	e := newEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "sb.db"), 3)
	setLease := func(expires time.Time) {
		b, _ := json.Marshal(map[string]any{"owner": "other-instance", "expires": expires})
		if err := e.store.UpdateSetting(t.Context(), directory.DefaultPBX, contactsync.LeaseKey, func([]byte) ([]byte, error) { return b, nil }); err != nil {
			t.Fatal(err)
		}
	}
	setLease(time.Now().Add(time.Hour))
	if _, err := e.cs.Run(t.Context(), directory.DefaultPBX); !errors.Is(err, contactsync.ErrRunning) {
		t.Fatalf("Run while another instance holds the lease: %v, want ErrRunning", err)
	}
	setLease(time.Now().Add(-time.Second))
	if _, err := e.cs.Run(t.Context(), directory.DefaultPBX); err != nil {
		t.Fatalf("Run after the other instance's lease expired: %v", err)
	}
	if _, err := e.store.GetSetting(t.Context(), directory.DefaultPBX, contactsync.LeaseKey); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the lease after a finished run: %v, want it removed", err)
	}
}
