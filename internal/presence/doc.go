// Package presence keeps PBX extension presence in step with Microsoft Teams
// presence (SPEC.md section 6, CONTRACT.md presence-sync settings).
//
// Settings live in the store's per-PBX Settings: "presence.sync" holds the
// global switch and direction ({enabled, direction}); "presence.ext.<id>"
// holds an extension's switch and mapping ({enabled, mapping}), the same
// document the client API (package sso) writes for the user's own mapping. A
// stored mapping may be partial: the availabilities it does not name take
// DefaultMapping.
//
// Teams -> extension has two paths. Graph allows presence change-notification
// subscriptions only with a delegated token, for at most 650 users each, one
// per application per delegated user, living at most 60 minutes
// (graph-facts.md 6.4). The service holds the authorization account's
// delegated token, so it owns one subscription: the first SubscriptionCapacity
// (650) eligible users are on the notification path, renewed RenewBefore its
// expiry. Every other eligible user is polled with getPresencesByUserId, 650
// ids a request.
//
// Polling interval rule. Graph's presence limit is 1,500 requests per 30
// seconds per application per tenant (the lower of the documented figures,
// graph-facts.md 9.3). Polling may use PollBudget of them (default 150, a
// tenth, leaving the rest for notifications' fetches and two-way setPresence):
//
//	requests = ceil(polledUsers / 650)
//	interval = max(MinPollInterval, requests * 30 s / PollBudget)
//
// With the defaults (MinPollInterval 10 s): 10,000 synced users on the
// polling path cost 16 requests a round, 10 s apart (48 requests per 30 s);
// the floor gives way above about 97,500 polled users.
//
// Several instances on one database: Run reconciles a PBX (polling, the
// subscription's create, renewal and teardown) only on the instance holding
// the PBX's presence lease (setting LeaseKey, {owner, expires, kick}). An
// instance takes a free or expired lease, renews its own at half LeaseTTL
// (90 s by default) and releases its leases when Run returns, so a dead
// holder's PBXs are taken over within about LeaseTTL and a stopped one's at
// once. Every instance reads each PBX's lease every LeaseTTL/30 (3 s): the
// holder to notice a takeover and kicks, the others to notice a free lease.
// The new holder starts with a full poll and keeps the stored subscription.
// A settings change handled by another instance bumps the lease's kick
// counter, and the holder runs a round when it sees it move (within
// LeaseTTL/30). Notifications are applied by whichever instance receives
// them, and two-way sessions are kept up by the instance that set them.
//
// Two-way: when an extension is ringing or busy (OnCallState) the user's
// Teams presence is set to Busy/InACall through setPresence with the
// application's session (sessionId = the app's client id); idle clears the
// session and applies the user's current Teams presence. While the extension
// is ringing or busy, Teams changes do not move its presence.
package presence
