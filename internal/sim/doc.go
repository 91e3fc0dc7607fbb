// Package sim is a simulated Microsoft Entra tenant: the Microsoft Graph v1.0 side of the
// wire (users, groups, delta, Outlook contacts, Teams presence, change notifications,
// JSON batching, throttling) plus the identity platform from package idp. It follows
// Microsoft's documented wire format (see /work/shared/graph-facts.md) so that the product,
// its tests and its benchmarks run against it exactly as against graph.microsoft.com and
// login.microsoftonline.com. It imports no product package.
//
// # Data
//
// New derives the directory from Config.Seed (same seed, same tenant): Config.Users users
// (user 0 is the Global Administrator admin@<domain>; about 5% guests with #EXT# UPNs,
// about 2% disabled; names in Latin with accents, Chinese, Cyrillic, Arabic, Greek,
// Japanese...; mobile phones in national formats; business phones, some short extensions;
// onPremisesExtensionAttributes with 3-5 digit numbers), a few shared mailboxes (disabled
// Member accounts whose mailboxSettings.userPurpose is "shared"), Config.Groups groups
// (security, Microsoft 365, distribution lists, mail-enabled security; some nested),
// personal contacts in the default Contacts folder and sometimes a named folder (a few
// invalid on purpose: no name, no phone) and a Teams presence for everyone. Contacts are
// generated from the seed on each read until the first write to a mailbox, so 100,000
// users with contacts cost about 80 MB. Config.ContactsPerUser gives every member user
// exactly that many contacts instead (benchmarks), generated the same way.
//
// # Graph endpoints (under /v1.0)
//
//	GET    /users, /users/$count, /users/{id|upn}, /me          $select $filter $top $count $search $orderby
//	POST   /users; PATCH, DELETE /users/{id}                    DELETE is a soft delete (deletedItems)
//	GET    /users/{id}/memberOf, /me/memberOf, /users/{id}/mailboxSettings
//	GET    /users/delta, /groups/delta                          $select, $filter=id eq, $deltatoken=latest
//	GET    /groups, /groups/{id}; POST /groups; PATCH, DELETE /groups/{id}
//	GET    /groups/{id}/members[/microsoft.graph.user|group], /groups/{id}/transitiveMembers[/...]
//	POST   /groups/{id}/members/$ref; DELETE /groups/{id}/members/{id}/$ref
//	GET    /directory/deletedItems/microsoft.graph.user|group; POST .../{id}/restore; DELETE .../{id}
//	GET|POST /users/{id}/contacts, /users/{id}/contactFolders/{fid}/contacts ("contacts" names the default folder)
//	GET|PATCH|DELETE .../contacts/{cid}; GET /users/{id}/contactFolders[/{fid}]
//	GET    /users/{id}/contactFolders/{fid}/contacts/delta      Prefer: odata.maxpagesize
//	       (every /users/{id}/... contacts route also exists under /me/...)
//	GET    /users/{id}/presence, /communications/presences/{id}, /me/presence
//	POST   /communications/getPresencesByUserId                 at most 650 ids
//	POST   /users/{id}/presence/setPresence|clearPresence|setUserPreferredPresence|clearUserPreferredPresence
//	POST|GET /subscriptions; GET|PATCH|DELETE /subscriptions/{id}; POST /subscriptions/{id}/reauthorize
//	POST   /$batch                                              at most 20 requests, dependsOn
//
// Every call needs a bearer token from the tenant's identity platform (401
// InvalidAuthenticationToken otherwise) holding one of the application roles or delegated
// scopes graph-facts lists for the call (403 Authorization_RequestDenied otherwise).
// Errors have Graph's shape {error:{code,message,innerError:{date,request-id,
// client-request-id}}}. Delta tokens of users and groups expire after
// Config.DeltaTokenTTL (7 days); an expired or unknown token answers 410 Gone with code
// syncStateNotFound and a Location header holding the initial delta URL. Delta is served
// from per-object change versions, not snapshots.
//
// Subscriptions run the validation handshake (POST notificationUrl?validationToken=...,
// 200 text/plain echo within 10 s) for notificationUrl and lifecycleNotificationUrl, cap
// expirations per resource (users/groups 41,760 min, contacts 10,080, presence 60), accept
// presence resources only with delegated tokens, and deliver notifications asynchronously
// (bounded queue, exponential-backoff retries). http:// URLs are accepted for local use.
// Presence and contact subscriptions may ask for rich notifications (includeResourceData
// with encryptionCertificate): encryptedContent is produced as graph-facts 7.6 describes
// (RSA-OAEP SHA-1 key wrap, AES-CBC, HMAC-SHA256); validationTokens are not sent.
//
// # Identity platform
//
// Every path outside /v1.0/ and /sim/ goes to idp.Provider.Handler: /{tenant}/oauth2/v2.0/
// authorize and token, /{tenant}/v2.0/.well-known/openid-configuration,
// /{tenant}/discovery/v2.0/keys, /{tenant}/v2.0/adminconsent, /common/... The app
// registration Config.ClientID / Config.ClientSecret is created consented with AppRoles and
// DelegatedScopes; AddRedirectURI (or Config.RedirectURIs) registers redirect URIs.
//
// # Admin API (under /sim/, JSON, no authentication: a local test tool)
//
//	GET  /sim/info                          tenant id, client id, domain, admin UPN, counts, base URLs
//	GET  /sim/stats                         {"total":N,"byEndpoint":{"GET /v1.0/users":N,...},"since":...}
//	POST /sim/stats/reset                   zero the counters
//	GET  /sim/faults, PUT /sim/faults       {"throttle":0.1,"retryAfterSeconds":2,"unavailable":0.01,
//	                                         "drop":0.01,"realLimits":true,"routes":["GET /v1.0/users"]}
//	POST /sim/delta/expire                  every delta/skip token issued so far answers 410
//	PUT  /sim/delta/ttl                     {"seconds":N}: delta token lifetime
//	GET  /sim/subscriptions                 active subscriptions
//	POST /sim/subscriptions/{id}/lifecycle  {"event":"reauthorizationRequired"|"subscriptionRemoved"|"missed"}
//	POST /sim/app/secret/expire             expire the app's client secrets (AADSTS7000222)
//	POST /sim/app/secrets                   {"value":"...","validForSeconds":N}: add a client secret
//	POST /sim/app/redirect-uris             {"uri":"..."}: register a redirect URI
//	PUT  /sim/app/roles                     {"roles":[...]}: replace the granted application roles
//	GET  /sim/mailboxes                     shared mailboxes: {"value":[{id,userPrincipalName,mail,displayName,contacts}]}
//	PUT  /sim/users/{id}/presence           {"availability":"Busy","activity":"InAMeeting"}: the user's Teams client state
//
// The same operations are Go methods on *Tenant (Stats, ResetStats, SetFaults,
// ExpireDeltaTokens, SetDeltaTokenTTL, TriggerLifecycle, ExpireClientSecret,
// AddClientSecret, AddRedirectURI, SetAppRoles, SharedMailboxes, SetTeamsPresence) next to
// read-only snapshots for tests (Users, UserList, User, Admin, GroupList, Contacts,
// Presence, Subscriptions).
package sim
