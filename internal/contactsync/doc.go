// Package contactsync copies Outlook contacts into the PBX: each synced
// user's personal contacts into that extension's personal contacts, and the
// contacts of shared mailboxes into company phonebooks (one per mailbox, or
// one for all). Everything it writes is marked source "entra" and is
// read-only for administrators and users; synced phonebooks start hidden and
// are shown through the phonebook visibility grants.
//
// # Which token reads which mailbox
//
// The vendor guide has every user share their Contacts folder with the
// authorization account (the account that connected the PBX), and has that
// account added as a member of each shared mailbox. So a mailbox is read
// first with the delegated client acting as the authorization account
// (graph-facts 5: Contacts.Read.Shared reads folders shared with or
// delegated to the signed-in user, through users/{owner}/contactFolders/...).
// When Graph refuses that (403/401: the folder is not shared, or the token
// has no *.Shared scope), the app-token client is tried if the tenant granted
// the application permission Contacts.Read or Contacts.ReadWrite, which reads
// every mailbox unless an Exchange ApplicationAccessPolicy restricts it. A
// mailbox neither can read is reported, and what was synced from it before
// is removed ("the folder is no longer shared"). When the delegated client
// has been refused for the first few mailboxes of a run and has read none,
// it is not tried again in that run (its token lacks the shared scopes), so
// that a tenant relying on the application permission pays no extra request
// per mailbox.
//
// # Incremental reads
//
// Every folder (the default Contacts folder and the folders under it) is
// read with contacts delta. Its state, stored under the Settings key
// "contacts.delta.<mailbox>.<folder>", holds the deltaLink, the contacts
// stored from it (as 64-bit sums of their ids, 11 characters each instead of
// about 150; states that list the ids themselves are still read) and the
// contacts skipped as invalid. A run keeps only each state's owner and
// mailbox in memory and reads the whole state when it syncs that owner. The
// link is advanced only after the owner's contacts were written
// (store.ReplaceSyncedContacts, one transaction per owner), so a failed run
// repeats the same delta round next time. An expired delta token restarts
// the folder with a full read.
//
// A run writes only what changed: an owner's contacts are rewritten only
// when a contact was created, changed or removed, and a folder whose delta
// round brought nothing keeps its stored state, deltaLink included (the old
// link reads from the same point), so an unchanged tenant costs no write
// but the run's report. The link of an unchanged folder is renewed once it
// is a day old.
//
// # Limits
//
// Outlook allows 4 concurrent requests per app and mailbox (graph-facts
// 9.3). A mailbox is read by one worker, one request at a time, and a
// semaphore per mailbox caps it at MailboxConcurrency in any case; several
// mailboxes are read in parallel (Workers). The first two requests of each
// mailbox (the first page of the default folder's delta round and of its
// folder list) are sent for 10 mailboxes at a time in one $batch of 20
// (unordered: at most 2 per mailbox, and Graph hands Outlook at most 4
// items of a batch at a time, graph-facts 8); further pages and the other
// folders are read directly. The graph client honours Retry-After on 429
// and 503 answers, for whole requests and for $batch items.
//
// # Phone numbers
//
// Numbers are stored as entered, and next to them their dialling forms
// (directory.Contact.MobileDial, HomeDial, BusinessDial; see Dial and
// SetDialForms): E.164 where the country is known, from the number's
// international prefix or the PBX's default country in the settings. A run
// recomputes the forms of every synced contact, so a changed default country
// rewrites the ones it changes; the admin API fills them for local contacts.
package contactsync
