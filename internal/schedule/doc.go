// Package schedule decides when a PBX's directory sync runs: on its schedule
// (daily or weekly at a local time, daylight-saving aware), after changes in
// Microsoft Entra ID reported by Graph change notifications, by
// delta polling where notifications cannot reach the service, and after a
// lifecycle event says notifications were missed.
//
// Sync is a level-triggered reconcile: everything here only asks a Runner to
// sync a PBX ("start now, or join the running one"); the sync engine reads
// delta and local state itself. Nothing here imports the sync engine.
//
// One Service holds it all. Service.Run is the background loop (schedule,
// polling, subscription upkeep); Service.Handler serves the public webhook
// endpoints /webhooks/graph and /webhooks/graph/lifecycle, which hand each
// notification's work to the Runner (with jobs.Runner: durable jobs,
// debounced per window there) before acknowledging it.
package schedule
