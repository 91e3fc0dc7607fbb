package syncer

import (
	"context"
	"errors"
	"fmt"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// itemError reports whether err concerns one record (so the rest of its
// batch can still be applied one by one).
func itemError(err error) bool {
	var fe *directory.FieldError
	var le *directory.LockedError
	return errors.As(err, &fe) || errors.As(err, &le) || errors.Is(err, store.ErrConflict) ||
		errors.Is(err, directory.ErrCapacity) || errors.Is(err, store.ErrNotFound)
}

// apply writes the plan through pbx.Service in transactions of ApplyBatch
// changes: deletions first (they free numbers, emails and capacity), then
// updates, then creations. A batch refused because of one record is retried
// record by record and the refused ones are reported as skipped. Every
// transaction is fenced by the run's lease. With welcome, each transaction
// also writes the welcome emails of the extensions it creates into the
// outbox (welcome.go), so that they are sent if and only if the
// extensions exist. Applied records are let go batch by batch, so that a
// 100,000-user first sync does not hold them all to the end.
func (e *Engine) apply(ctx context.Context, pbx string, fl *inflight, w *Run, pl *plan, welcome bool) error {
	batch := 0
	count := func(a Action) {
		switch a.Op {
		case OpCreate:
			w.Created++
		case OpUpdate:
			w.Updated++
		case OpBind:
			w.Bound++
		case OpRelease:
			w.Released++
		case OpDelete:
			w.Deleted++
		}
	}
	fence := e.leaseFence(w.ID) // every batch lands only while the run holds the lease
	changes := func(acts []Action, tag string) store.ExtensionChanges {
		c := store.ExtensionChanges{Fence: fence}
		if welcome {
			c.Settings = e.outbox(w.ID, tag, acts)
		}
		for _, a := range acts {
			switch a.Op {
			case OpCreate:
				c.Create = append(c.Create, a.ext)
			case OpDelete:
				c.Delete = append(c.Delete, a.ExtensionID)
			default:
				c.Update = append(c.Update, a.ext)
			}
		}
		return c
	}
	size := e.batchSize()
	for _, group := range [][]Action{pl.deletes, pl.updates, pl.creates} {
		for start := 0; start < len(group); start += size {
			acts := group[start:min(start+size, len(group))]
			if e.BeforeApplyBatch != nil {
				e.BeforeApplyBatch(w, batch)
			}
			batch++
			tag := fmt.Sprintf("%06d", batch)
			err := e.PBX.ApplyExtensions(ctx, pbx, changes(acts, tag))
			switch {
			case err == nil:
				for _, a := range acts {
					count(a)
				}
			case itemError(err):
				for i, a := range acts {
					if err := e.PBX.ApplyExtensions(ctx, pbx, changes([]Action{a}, fmt.Sprintf("%s-%05d", tag, i))); err != nil {
						if !itemError(err) {
							return err
						}
						w.skip(a.Subject, a.EntraID, "not applied ("+a.Op+"): "+err.Error())
						continue
					}
					count(a)
				}
			default:
				return err
			}
			for i := range acts {
				acts[i].ext = nil
			}
			e.progress(fl, func(r *Run) {
				r.Created, r.Updated, r.Bound, r.Released, r.Deleted = w.Created, w.Updated, w.Bound, w.Released, w.Deleted
			})
		}
	}
	return nil
}
