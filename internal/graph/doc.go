// Package graph is Switchboard's thin client for Microsoft Graph and the Microsoft
// identity platform: app and delegated tokens, typed errors, retries that honour
// Retry-After, a per-tenant concurrency limit, OData paging, delta queries, $batch,
// presence and change-notification subscriptions.
//
// It knows nothing of the PBX. One *Client serves one tenant; share it between the
// goroutines that work on that tenant so that its concurrency limit applies to all of
// them. Both base URLs are configurable, so the same code runs against the real cloud
// and against the simulated tenant.
//
// Collections are read one page at a time: ListUsers and friends return Go iterators
// (iter.Seq2) that fetch the next page only when the previous one is consumed, and
// follow @odata.nextLink verbatim. Delta functions hand each page to a callback and
// return the new deltaLink only after every callback succeeded.
package graph
