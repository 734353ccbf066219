package config

// The values of the keys that choose among a few behaviours. Each key's
// type lists its values, so code that acts on a choice compares against
// these constants, not strings, and the validator (oneOf in validate.go)
// accepts exactly them.

// Security is imap.security and smtp.security: how the connection is
// protected.
type Security string

// The values of Security.
const (
	SecurityTLS      Security = "tls"      // TLS from the first byte
	SecurityStartTLS Security = "starttls" // STARTTLS, required
	SecurityNone     Security = "none"     // plain text (loopback, tests)
)

// StoreDriver is store.driver: which database keeps mailgate's state.
type StoreDriver string

// The values of StoreDriver.
const (
	StoreSQLite   StoreDriver = "sqlite"   // one SQLite file (store.path): a single host
	StorePostgres StoreDriver = "postgres" // a PostgreSQL server (store.dsn): shared by several instances
)

// After is imap.after: what happens to a handled message in the mailbox.
type After string

// The values of After.
const (
	AfterSeen   After = "seen"   // flag it \Seen
	AfterMove   After = "move"   // move it to imap.move_to
	AfterDelete After = "delete" // delete it
	AfterNone   After = "none"   // leave it as it is
)

// ReplyCc is smtp.reply_cc: whom replies are copied to.
type ReplyCc string

// The values of ReplyCc.
const (
	ReplyCcThread ReplyCc = "thread" // the Cc of the contact's latest email
	ReplyCcNone   ReplyCc = "none"   // the contact only
)

// Require is verify.require: what proves that a sender owns the From
// address.
type Require string

// The values of Require.
const (
	RequireDMARC Require = "dmarc" // DMARC, or aligned DKIM/SPF without a policy
	RequireDKIM  Require = "dkim"  // aligned DKIM
	RequireNone  Require = "none"  // nothing: every sender is believed
)

// OnFail is verify.on_fail: what happens to mail whose sender fails.
type OnFail string

// The values of OnFail.
const (
	OnFailQuarantine OnFail = "quarantine" // move it to imap.quarantine_folder
	OnFailReject     OnFail = "reject"     // flag it where it is
)

// SubjectMode is inbound.subject: how a new conversation starts.
type SubjectMode string

// The values of SubjectMode.
const (
	SubjectFirstLine SubjectMode = "first-line" // the subject is the first line
	SubjectNone      SubjectMode = "none"       // the text only
)

// MailingLists is inbound.mailing_lists: what happens to list mail.
type MailingLists string

// The values of MailingLists.
const (
	MailingListsSkip MailingLists = "skip"
	MailingListsPost MailingLists = "post"
)

// AttachOriginal is inbound.attach_original: when the whole email goes
// along as a file.
type AttachOriginal string

// The values of AttachOriginal.
const (
	AttachOriginalNever       AttachOriginal = "never"
	AttachOriginalWhenTrimmed AttachOriginal = "when-trimmed"
	AttachOriginalAlways      AttachOriginal = "always"
)
