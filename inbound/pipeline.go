package inbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mailgate/mailtext"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mailgate/classify"
	"mailgate/imapsync"
	"mailgate/mailaddr"
	"mailgate/mailparse"
	"mailgate/media"
	"mailgate/store"
	"mailgate/userlike"
)

// Options configures the inbound side of one channel.
type Options struct {
	// Channel is the channel name, the key of every store row.
	Channel string
	DB      *store.DB
	// Analyzer decides about each email; its parse sink stores media.
	Analyzer *Analyzer
	// Client posts to the channel's Inbound URL.
	Client *userlike.Client
	// MediaURL turns a media id into the signed URL that Userlike fetches.
	MediaURL func(ctx context.Context, id string) (string, error)
	// After is the IMAP action for posted and skipped mail.
	After store.Action
	// Quarantine is the IMAP action for mail whose sender failed
	// verification: a move to the quarantine folder, or a flag.
	Quarantine store.Action
	// RateLimit and RateWindow bound how many emails one sender gets posted
	// (default 20 in 10 minutes); more are skipped.
	RateLimit  int
	RateWindow time.Duration
	// SubjectLine puts the subject first in a new conversation's text.
	SubjectLine bool
	// AttachOriginal is "never", "when-trimmed" or "always": whether the
	// untrimmed email is posted too, as an .eml media message.
	AttachOriginal string
	// StoreOriginal stores a raw email as media and returns its id; it is
	// needed unless AttachOriginal is "never".
	StoreOriginal func(ctx context.Context, raw []byte) (mediaID string, err error)
	// SyncMedia, when set, makes the media files stored so far durable
	// (media.Library.Sync). It is called once before a ledger commit that
	// refers to media, for every email of the commit at once: the media
	// library does not fsync each file as it stores it.
	SyncMedia func() error
	// MaxPostAge is how long temporary POST failures are retried before
	// the email is dead-lettered (default 72h); `mailgate dead retry`
	// starts it again.
	MaxPostAge time.Duration
	// Workers bounds concurrent POSTs (to different contacts); default 4.
	Workers int
	// DrainTimeout bounds how long Run lets the POSTs in flight finish
	// after its context ends (default 30 s); then it cancels them, and
	// their ledger writes with them. A channel run under a lease sets it
	// well below the lease's safety margin, so that a fenced-out instance
	// stops writing the ledger before another can take over.
	DrainTimeout time.Duration
	// Notify tells the mailbox watcher that IMAP actions, or messages to
	// fetch again, are pending.
	Notify func()
	// RemoveMedia, when set, deletes stored attachments by media id. The
	// attachments of an email that is not posted (skipped, quarantined,
	// dead, a duplicate) are removed as soon as its decision is recorded,
	// so that unverified senders cannot fill the disk.
	RemoveMedia func(ctx context.Context, ids []string) error
	// OnBounce, when set, gets every trusted bounce that carries a
	// delivery report (Decision.BounceTrusted), so that the outbox can
	// match it to the reply it concerns.
	OnBounce func(ctx context.Context, report *mailparse.Report, raw []byte)
	// Observe, when set, is told the outcome of every email.
	Observe func(Outcome)
	Logger  *slog.Logger
	Now     func() time.Time
}

// Outcome is reported to Options.Observe, for metrics.
type Outcome struct {
	// Kind is "posted", "skipped", "quarantined", "dead", "retried",
	// "history" (messages in a folder before reading started, not posted)
	// or "action-refused" (IMAP actions the server refused).
	Kind string
	// Reason is a short label (for skips, the classification).
	Reason string
	// Latency is the time from the email's arrival in the mailbox to the
	// end of its last POST (posted only).
	Latency time.Duration
	// CharsetFallbacks counts parts decoded with a guessed charset.
	CharsetFallbacks int
	// Count is how many messages a "history" outcome left out, or how many
	// actions an "action-refused" outcome concerns.
	Count int
}

// Pipeline moves customer emails of one channel from the mailbox into
// Userlike. It is the imapsync.Handler, CursorStore and ActionSource of the
// channel's Watcher, and its Run method posts the ledger's due messages.
type Pipeline struct {
	opts Options
	log  *slog.Logger
	wake chan struct{}
	beat atomic.Int64 // unix nanoseconds of the poster loop's last turn
}

// Heartbeat is when the poster loop last went round; it goes round at
// least every few seconds while Run is alive. The daemon's watchdog uses it.
func (in *Pipeline) Heartbeat() time.Time { return time.Unix(0, in.beat.Load()) }

// New returns the inbound side of a channel.
func New(opts Options) (*Pipeline, error) {
	if opts.Channel == "" || opts.DB == nil || opts.Analyzer == nil || opts.Client == nil {
		return nil, errors.New("inbound: inbound needs a channel, a store, an analyzer and a client")
	}
	if opts.RateLimit == 0 {
		opts.RateLimit = 20
	}
	if opts.RateWindow == 0 {
		opts.RateWindow = 10 * time.Minute
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = drainTimeout
	}
	if opts.MaxPostAge <= 0 {
		opts.MaxPostAge = 72 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Notify == nil {
		opts.Notify = func() {}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Pipeline{opts: opts, log: log.With("channel", opts.Channel), wake: make(chan struct{}, 1)}, nil
}

// Cursor implements imapsync.CursorStore.
func (in *Pipeline) Cursor(ctx context.Context, folder string) (imapsync.Cursor, error) {
	c, err := in.opts.DB.Cursor(ctx, in.opts.Channel, folder)
	return imapsync.Cursor(c), err
}

// StartFolder implements imapsync.CursorStore: it records where reading the
// folder starts, durably, and counts the history it leaves out.
func (in *Pipeline) StartFolder(ctx context.Context, folder string, c imapsync.Cursor) error {
	if err := in.opts.DB.SetCursor(ctx, in.opts.Channel, folder, store.Cursor(c)); err != nil {
		return err
	}
	in.log.Info("inbound: mail already in the folder is history and is not posted (imap.start)",
		"folder", folder, "history", c.History, "after_uid", c.UID)
	in.observe(Outcome{Kind: "history", Count: c.History})
	return nil
}

// Refetches implements imapsync.RefetchSource: the dead letters that
// `mailgate dead retry` asked to fetch again.
func (in *Pipeline) Refetches(ctx context.Context, folder string, uidValidity uint32) ([]uint32, error) {
	return in.opts.DB.Refetches(ctx, in.opts.Channel, folder, uidValidity)
}

// RefetchFailed implements imapsync.RefetchSource.
func (in *Pipeline) RefetchFailed(ctx context.Context, folder string, uidValidity uint32, uids []uint32, why string) error {
	return in.opts.DB.RefetchFailed(ctx, in.opts.Channel, folder, uidValidity, uids, why)
}

// UIDValidityChanged implements imapsync.Handler. The folder is rescanned;
// the ledger's dedupe keys keep already-posted mail from being posted again.
func (in *Pipeline) UIDValidityChanged(ctx context.Context, folder string, old, new uint32) error {
	in.log.Warn("imap: UIDVALIDITY changed, rescanning the folder; already posted mail is recognised by its Message-ID",
		"folder", folder, "old", old, "new", new)
	return nil
}

// PendingActions implements imapsync.ActionSource.
func (in *Pipeline) PendingActions(ctx context.Context, folder string, limit int) ([]imapsync.Action, error) {
	pending, err := in.opts.DB.PendingActions(ctx, in.opts.Channel, folder, limit)
	if err != nil {
		return nil, err
	}
	actions := make([]imapsync.Action, len(pending))
	for i, p := range pending {
		actions[i] = imapsync.Action{ID: p.ID, UIDValidity: p.UIDValidity, UID: p.UID, Kind: p.Action.Kind, Dest: p.Action.Dest}
	}
	return actions, nil
}

// ActionsRefused implements imapsync.ActionSource: the refusal is kept on
// the ledger rows (mailgate status) and counted.
func (in *Pipeline) ActionsRefused(ctx context.Context, ids []int64, reason string) error {
	if err := in.opts.DB.ActionsRefused(ctx, ids, reason); err != nil {
		return err
	}
	if in.opts.Observe != nil {
		in.opts.Observe(Outcome{Kind: "action-refused", Count: len(ids)})
	}
	return nil
}

// ActionsDone implements imapsync.ActionSource.
func (in *Pipeline) ActionsDone(ctx context.Context, ids []int64) error {
	return in.opts.DB.ActionsDone(ctx, ids)
}

// Prepare analyzes m ahead of Handle (imapsync.Preparer): parsing,
// verification, trimming and storing the attachments need no order and
// no ledger, so the Watcher runs them on several messages at once.
func (in *Pipeline) Prepare(ctx context.Context, m *imapsync.Message) {
	if !m.TooLarge && !m.History {
		m.Prepared = in.opts.Analyzer.Analyze(ctx, m.Raw)
	}
}

// Handle implements imapsync.Handler: it decides about one email and
// records the decision, its queued posts and the folder cursor in one
// transaction. It returns an error only for temporary failures (the store,
// the media directory); a bad email is dead-lettered, never returned.
func (in *Pipeline) Handle(ctx context.Context, m *imapsync.Message) error {
	state := &senderStates{db: in.opts.DB}
	row, d, err := in.decide(ctx, m, state)
	state.close()
	if err != nil {
		return err
	}
	return in.record(ctx, row, d)
}

// HandleBatch implements imapsync.BatchHandler: it decides about each
// email in order, as Handle does, and records the decisions of a run of
// them, with their posts and the folder cursor, in one transaction. An
// email whose sender already has one in the run starts a new run: its
// decision reads what the ledger says about that sender (rate limit,
// conversation), which must include the earlier email. It returns how many
// emails it recorded and, when fewer than all, the temporary failure of
// the next one.
func (in *Pipeline) HandleBatch(ctx context.Context, msgs []*imapsync.Message) (int, error) {
	var (
		done     int
		rows     []*store.Inbound
		ds       []*Decision
		contacts = make(map[string]bool)
		// The decisions of a run read one snapshot; the next run's
		// must see this one's rows.
		state = &senderStates{db: in.opts.DB}
	)
	defer state.close()
	flush := func() error {
		state.close()
		if len(rows) == 0 {
			return nil
		}
		if err := in.syncMedia(rows...); err != nil {
			return err
		}
		results, err := in.opts.DB.RecordInbounds(ctx, rows)
		for i, res := range results {
			in.settle(ctx, rows[i], ds[i], res)
		}
		done += len(results)
		rows, ds = rows[:0], ds[:0]
		clear(contacts)
		if err != nil {
			return fmt.Errorf("inbound: %w", err)
		}
		return nil
	}
	for _, m := range msgs {
		if d, _ := m.Prepared.(*Decision); !m.History && !m.TooLarge && (d == nil || contacts[senderKey(d)]) {
			// The sender is unknown until decided, or has an email in this
			// run: record the run first.
			if err := flush(); err != nil {
				return done, err
			}
		}
		row, d, err := in.decide(ctx, m, state)
		if err != nil {
			if ferr := flush(); ferr != nil {
				return done, ferr
			}
			return done, err
		}
		in.rowForRecord(row, d)
		rows, ds = append(rows, row), append(ds, d)
		if d != nil {
			contacts[senderKey(d)] = true
		}
	}
	return done, flush()
}

// senderKey is the sender of d as HandleBatch tells them apart.
func senderKey(d *Decision) string {
	return "<" + mailaddr.Key(d.Contact.Email) + ">"
}

// decide makes the decision about m and builds its ledger row; d is nil
// for history and messages too large to fetch.
func (in *Pipeline) decide(ctx context.Context, m *imapsync.Message, state *senderStates) (row *store.Inbound, d *Decision, err error) {
	row = &store.Inbound{
		Channel:     in.opts.Channel,
		Folder:      m.Folder,
		UIDValidity: m.UIDValidity,
		UID:         m.UID,
		ArrivedAt:   m.InternalDate,
		Raw:         m.Raw,
	}
	if row.ArrivedAt.IsZero() {
		row.ArrivedAt = in.opts.Now()
	}
	if m.History {
		// In the folder before reading started (imap.start): recorded,
		// never posted, never touched.
		row.State = store.StateSkipped
		row.Classification = "history"
		row.Reason = "in the folder before mailgate started reading it (imap.start)"
		return row, nil, nil
	}
	if m.TooLarge {
		row.State = store.StateDead
		row.Reason = fmt.Sprintf("the email is %d bytes, over media.max_message_size; it stays in the mailbox", m.Size)
		return row, nil, nil
	}
	d, _ = m.Prepared.(*Decision)
	if d == nil {
		d = in.opts.Analyzer.Analyze(ctx, m.Raw)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if d.Action == ActionPost {
		if err := in.applyState(ctx, d, state); err != nil {
			return nil, nil, err
		}
	}
	row.DedupeKey = d.DedupeKey
	row.MessageID = d.MessageID
	row.Contact = d.Contact.Email
	row.ContactName = d.Contact.Name
	row.Subject = d.Subject
	row.Reason = d.Reason
	row.Classification = string(d.Classification.Class)
	row.FullText = d.FullText
	row.ThreadSubject = mailtext.NormalizeSubject(d.Subject)
	row.NewThread = d.NewThread
	row.Cc, row.KeepCc = d.Cc, d.KeepCc
	if v, err := json.Marshal(d.Verification); err == nil {
		row.Verdict = v
	}
	switch d.Action {
	case ActionPost:
		row.State = store.StateFetched
		row.After = in.opts.After
		if in.attachOriginal(d) {
			id, err := in.opts.StoreOriginal(ctx, m.Raw)
			switch {
			case errors.Is(err, media.ErrTooLarge):
				// Permanent: say so in the text instead of retrying (which
				// would hold up the folder).
				d.NewText = appendLine(d.NewText, "[mailgate] The original email was not attached: it is larger than media.max_size. It stays in the mailbox.")
				d.SetThread(d.NewThread, in.opts.SubjectLine)
			case err != nil:
				return nil, nil, fmt.Errorf("inbound: store the original email of uid %d: %w", m.UID, err)
			default:
				d.Attachments = append(d.Attachments, AttachmentInfo{Name: "original-message.eml", Type: "message/rfc822", Size: int64(len(m.Raw)), Action: "post", MediaID: id})
			}
		}
		row.Posts = buildPosts(d)
	case ActionSkip:
		row.State = store.StateSkipped
		row.After = in.opts.After
		switch {
		case d.Report == nil || d.Classification.Class != classify.ClassBounce || in.opts.OnBounce == nil:
		case d.BounceTrusted():
			in.opts.OnBounce(ctx, d.Report, m.Raw)
		default:
			in.log.Warn("inbound: bounce not matched to a reply: "+d.Bounce,
				"from", d.Contact.Email, "verdict", d.Verification.Result, "uid", m.UID, "folder", m.Folder)
		}
	case ActionQuarantine:
		row.State = store.StateQuarantined
		row.After = in.opts.Quarantine
		in.log.Warn("inbound: sender not verified, email quarantined",
			"from", d.Contact.Email, "verdict", d.Verification.Result, "reason", d.Verification.Reason, "uid", m.UID, "folder", m.Folder)
	default:
		row.State = store.StateDead
	}
	return row, d, nil
}

// attachOriginal reports whether the untrimmed email goes along as media.
func (in *Pipeline) attachOriginal(d *Decision) bool {
	if in.opts.StoreOriginal == nil {
		return false
	}
	switch in.opts.AttachOriginal {
	case "always":
		return true
	case "when-trimmed":
		return d.Trimmed
	}
	return false
}

// senderStates reads what the ledger holds about senders from one store
// snapshot, begun on first use, for the decisions of a run of emails from
// different senders.
type senderStates struct {
	db   *store.DB
	snap *store.Snapshot
}

// get returns what the ledger holds about contact.
func (s *senderStates) get(ctx context.Context, channel, contact string, since time.Time, refs []string) (store.SenderState, error) {
	if s.snap == nil {
		snap, err := s.db.Snapshot(ctx)
		if err != nil {
			return store.SenderState{}, err
		}
		s.snap = snap
	}
	return s.snap.SenderState(ctx, channel, contact, since, refs)
}

// close ends the snapshot, if any; the next get begins a new one.
func (s *senderStates) close() {
	if s.snap != nil {
		s.snap.Close()
		s.snap = nil
	}
}

// applyState applies what needs the ledger: the per-sender rate limit and
// whether the email continues a known conversation.
func (in *Pipeline) applyState(ctx context.Context, d *Decision, state *senderStates) error {
	since := in.opts.Now().Add(-in.opts.RateWindow)
	st, err := state.get(ctx, in.opts.Channel, d.Contact.Email, since, d.References)
	if err != nil {
		return err
	}
	if n := st.Recent; n >= in.opts.RateLimit {
		d.Action = ActionSkip
		d.Reason = fmt.Sprintf("rate limit: %d emails from %s within %s", n, d.Contact.Email, in.opts.RateWindow)
		d.RateLimitReached = n == in.opts.RateLimit
		return nil
	}
	newThread := !st.Known
	if newThread && st.HasThread && st.ThreadSubject != "" && st.ThreadSubject == mailtext.NormalizeSubject(d.Subject) {
		newThread = false
	}
	// The operator is told whenever the CC list of the replies changes.
	d.CcChanged = !d.KeepCc && !newThread && st.HasThread && !sameAddresses(st.ThreadCc, d.Cc)
	d.SetThread(newThread, in.opts.SubjectLine)
	return nil
}

// sameAddresses reports whether a and b hold the same addresses in the
// same order, ASCII case-insensitively.
func sameAddresses(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if mailaddr.Key(a[i]) != mailaddr.Key(b[i]) {
			return false
		}
	}
	return true
}

// buildPosts returns the queued posts of a decision to post: its text,
// then a media URL per attachment to post, each encoded as postItem.
func buildPosts(d *Decision) [][]byte {
	var items []postItem
	if d.Text != "" {
		items = append(items, postItem{Text: d.Text})
	}
	for _, a := range d.Attachments {
		if a.Action == "post" && a.MediaID != "" {
			items = append(items, postItem{MediaID: a.MediaID})
		}
	}
	posts := make([][]byte, len(items))
	for i, it := range items {
		posts[i] = it.encode()
	}
	return posts
}

// record records one decided email and settles it.
func (in *Pipeline) record(ctx context.Context, row *store.Inbound, d *Decision) error {
	in.rowForRecord(row, d)
	if err := in.syncMedia(row); err != nil {
		return err
	}
	res, err := in.opts.DB.RecordInbound(ctx, row)
	if err != nil {
		return fmt.Errorf("inbound: record %s uid %d: %w", row.Folder, row.UID, err)
	}
	in.settle(ctx, row, d, res)
	return nil
}

// syncMedia makes the media files that rows refer to durable before the
// rows are committed: a ledger row must not survive a power cut that its
// attachments do not.
func (in *Pipeline) syncMedia(rows ...*store.Inbound) error {
	if in.opts.SyncMedia == nil {
		return nil
	}
	for _, row := range rows {
		if len(row.MediaIDs) > 0 {
			if err := in.opts.SyncMedia(); err != nil {
				return fmt.Errorf("inbound: %w", err)
			}
			return nil
		}
	}
	return nil
}

// rowForRecord completes row for the ledger.
func (in *Pipeline) rowForRecord(row *store.Inbound, d *Decision) {
	// The mailbox is the source of truth for the bytes: the posts are
	// rendered already, and a refetch goes by UID. Only a dead letter keeps
	// its raw copy in the store (`mailgate dead show -raw`).
	if row.State != store.StateDead {
		row.Raw = nil
	}
	if d != nil && row.State == store.StateFetched {
		for _, a := range d.Attachments {
			if a.MediaID != "" {
				row.MediaIDs = append(row.MediaIDs, a.MediaID)
			}
		}
	}
}

// settle does what follows the recording of row: it removes the media of
// an email that is not posted, wakes the poster or the watcher, logs and
// counts.
func (in *Pipeline) settle(ctx context.Context, row *store.Inbound, d *Decision, res store.RecordResult) {
	if row.State != store.StateFetched || res.Existing || res.DuplicateOf != 0 {
		in.removeMedia(ctx, row, d)
	}
	if res.Existing {
		return
	}
	if res.Replaced != 0 {
		in.log.Info("inbound: dead letter fetched again", "ledger_id", res.ID, "replaces", res.Replaced, "uid", row.UID, "folder", row.Folder, "state", row.State)
	}
	state := row.State
	if res.DuplicateOf != 0 {
		state = store.StateSkipped
		in.log.Info("inbound: duplicate email skipped", "uid", row.UID, "folder", row.Folder, "duplicate_of", res.DuplicateOf)
	}
	switch state {
	case store.StateFetched:
		in.poke()
	case store.StateDead:
		in.log.Error("inbound: email dead-lettered", "ledger_id", res.ID, "uid", row.UID, "folder", row.Folder, "reason", row.Reason)
		in.observe(Outcome{Kind: "dead"})
	case store.StateSkipped:
		if d != nil && d.RateLimitReached {
			// Once per sender and window, not per email: a mail loop
			// must not flood the log.
			in.log.Warn("inbound: rate limit reached; this sender's further emails within the window are skipped, not posted (channel.inbound.rate_limit)",
				"ledger_id", res.ID, "uid", row.UID, "folder", row.Folder, "contact", d.Contact.Email,
				"rate_limit", in.opts.RateLimit, "window", in.opts.RateWindow.String())
		}
		in.observe(Outcome{Kind: "skipped", Reason: skipLabel(row)})
		in.opts.Notify()
	case store.StateQuarantined:
		in.observe(Outcome{Kind: "quarantined"})
		in.opts.Notify()
	}
	if d != nil && d.CharsetFallbacks > 0 {
		in.observe(Outcome{Kind: "charset-fallback", CharsetFallbacks: d.CharsetFallbacks})
	}
}

func skipLabel(row *store.Inbound) string {
	switch {
	case strings.HasPrefix(row.Reason, "rate limit"):
		return "rate-limit"
	case row.Classification != "" && row.Classification != "normal":
		return row.Classification
	}
	return "duplicate"
}

func (in *Pipeline) observe(o Outcome) {
	if in.opts.Observe != nil {
		in.opts.Observe(o)
	}
}

// poke wakes the poster without blocking.
func (in *Pipeline) poke() {
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// idleRecheck is how often the poster looks for due posts when nothing
// woke it.
const idleRecheck = 3 * time.Second

// drainTimeout is the default of Options.DrainTimeout.
const drainTimeout = 30 * time.Second

// contactBackoff is the retry state of one contact whose POST failed
// temporarily.
type contactBackoff struct {
	until time.Time
	delay time.Duration
}

// postResult is what a POST goroutine reports back to the poster loop.
type postResult struct {
	contact string
	err     error
	retry   time.Duration
}

// Run posts due ledger messages until ctx is cancelled, then waits (at most
// 30 s) for the POSTs in flight. Messages of one contact are posted one at a
// time, in order; different contacts are posted concurrently, up to
// Workers. A contact whose POST fails temporarily is backed off without
// holding up the others.
func (in *Pipeline) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	postCtx, cancelPosts := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelPosts()
	results := make(chan postResult, in.opts.Workers)
	inflight := map[string]bool{}
	backoff := map[string]*contactBackoff{}
	// queue holds due posts read ahead, of contacts neither in flight nor
	// backed off, so that a backlog costs one DuePosts query per
	// queueDepth posts instead of one per post. An entry cannot go stale:
	// only this loop advances or finishes a contact's unfinished rows, and
	// a contact leaves the queue when its post starts.
	var queue []store.DuePost
	queueDepth := 8 * in.opts.Workers
	refetches := 0 // dead letters waiting to be fetched again
	var refetchChecked time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()

	for {
		now := in.opts.Now()
		in.beat.Store(time.Now().UnixNano())
		var skip []string
		// Look again every few seconds even when nothing is due, so that
		// rows requeued by `mailgate dead retry` from another process are
		// picked up.
		next := now.Add(idleRecheck)
		for c := range inflight {
			skip = append(skip, c)
		}
		for _, p := range queue {
			skip = append(skip, p.Contact)
		}
		for c, b := range backoff {
			if b.until.After(now) {
				skip = append(skip, c)
				if b.until.Before(next) {
					next = b.until
				}
			}
		}
		// `mailgate dead retry` runs in another process: look every few
		// seconds, and wake the Watcher when it asks for more dead
		// letters to be fetched again.
		if time.Since(refetchChecked) >= idleRecheck {
			refetchChecked = time.Now()
			if n, err := in.opts.DB.CountRefetches(ctx, in.opts.Channel); err == nil {
				if n > refetches {
					in.opts.Notify()
				}
				refetches = n
			}
		}
		if free := in.opts.Workers - len(inflight); free > 0 && ctx.Err() == nil {
			if len(queue) < free {
				due, err := in.opts.DB.DuePosts(ctx, in.opts.Channel, skip, queueDepth-len(queue))
				if err != nil && ctx.Err() == nil {
					in.log.Error("inbound: reading due posts failed", "err", err)
					next = now.Add(5 * time.Second)
				}
				queue = append(queue, due...)
			}
			n := min(free, len(queue))
			start := queue[:n:n]
			queue = queue[n:]
			for _, p := range start {
				inflight[p.Contact] = true
				wg.Add(1)
				go func() {
					defer wg.Done()
					results <- in.post(postCtx, p)
				}()
			}
		}
		timer.Reset(max(next.Sub(now), time.Millisecond))
		select {
		case <-ctx.Done():
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			go func() {
				for range results {
				}
			}()
			select {
			case <-done:
			case <-time.After(in.opts.DrainTimeout):
				in.log.Warn("inbound: posts still in flight after the drain timeout; they will be retried after restart")
				cancelPosts()
				<-done
			}
			close(results)
			return nil
		case <-in.wake:
		case <-timer.C:
		case r := <-results:
			delete(inflight, r.contact)
			if r.err != nil {
				b := backoff[r.contact]
				if b == nil {
					b = &contactBackoff{delay: time.Second}
					backoff[r.contact] = b
				} else {
					b.delay = min(b.delay*2, 5*time.Minute)
				}
				d := b.delay/2 + rand.N(b.delay/2+1)
				if r.retry > d {
					d = min(r.retry, 5*time.Minute)
				}
				b.until = in.opts.Now().Add(d)
			} else {
				delete(backoff, r.contact)
			}
		}
	}
}

// post sends one queued chat message. A temporary failure is returned so the
// contact is backed off; a permanent one dead-letters the email.
func (in *Pipeline) post(ctx context.Context, p store.DuePost) postResult {
	// The attempt is counted with the outcome (PostAccepted, PostFailed):
	// one ledger write per POST (an accept-log record, or a commit)
	// instead of a MarkPosting before it.
	res := postResult{contact: p.Contact}
	item, err := decodePost(p.Body)
	if err != nil {
		in.dead(ctx, p.LedgerID, "corrupt queued post: "+err.Error())
		return res
	}
	msg := userlike.InboundMessage{Email: p.Contact, Name: p.ContactName, Text: item.Text}
	if item.MediaID != "" {
		msg.URL, err = in.opts.MediaURL(ctx, item.MediaID)
		if errors.Is(err, store.ErrNotFound) {
			in.dead(ctx, p.LedgerID, "a media file of the email is gone (swept by media.retention?): "+err.Error())
			return res
		}
		if err != nil {
			res.err = err
			return res
		}
	}
	body, err := msg.Marshal()
	if err != nil {
		in.dead(ctx, p.LedgerID, "cannot encode the Userlike message: "+err.Error())
		return res
	}
	// The ledger commits lazily: before Userlike sees this post, the row
	// (and the acceptance of the post it follows) must survive a power
	// cut, or it could be fetched and posted again after one, or posted
	// again after this one. Concurrent posts share the fsync, and posts
	// read together one.
	if err := in.opts.DB.PostBarrier(ctx, p); err != nil {
		res.err = err
		return res
	}
	err = in.opts.Client.PostOnce(ctx, body)
	var perm *userlike.PermanentError
	var temp *userlike.TemporaryError
	switch {
	case err == nil:
	case errors.As(err, &perm):
		in.dead(ctx, p.LedgerID, fmt.Sprintf("Userlike refused the message: %v", err))
		return res
	case errors.As(err, &temp) && in.opts.Now().Sub(p.CreatedAt) > in.opts.MaxPostAge:
		in.dead(ctx, p.LedgerID, fmt.Sprintf("Userlike did not accept the message for %s: %v", in.opts.MaxPostAge, err))
		return res
	case errors.As(err, &temp):
		in.log.Warn("inbound: post failed, will retry", "ledger_id", p.LedgerID, "contact", p.Contact, "err", err)
		_ = in.opts.DB.PostFailed(ctx, p.LedgerID, p.Seq, err.Error())
		in.observe(Outcome{Kind: "retried"})
		res.err, res.retry = err, temp.RetryAfter
		return res
	default:
		_ = in.opts.DB.PostFailed(ctx, p.LedgerID, p.Seq, err.Error())
		res.err = err
		return res
	}
	finished, err := in.opts.DB.PostAccepted(ctx, p)
	if err != nil {
		res.err = err
		return res
	}
	if finished {
		in.observe(Outcome{Kind: "posted", Latency: in.opts.Now().Sub(p.ArrivedAt)})
		in.opts.Notify()
	}
	in.poke()
	return res
}

func (in *Pipeline) dead(ctx context.Context, id int64, reason string) {
	if err := in.opts.DB.MarkDead(ctx, id, reason); err != nil {
		in.log.Error("inbound: dead-lettering failed", "ledger_id", id, "err", err)
		return
	}
	in.log.Error("inbound: email dead-lettered", "ledger_id", id, "reason", reason)
	in.observe(Outcome{Kind: "dead"})
	in.opts.Notify()
	in.poke()
}

// removeMedia deletes the attachments that d stored while it was analyzed,
// once the decision not to post them is recorded. A failure is logged: the
// records then expire with the media TTL like any other.
func (in *Pipeline) removeMedia(ctx context.Context, row *store.Inbound, d *Decision) {
	if d == nil || in.opts.RemoveMedia == nil {
		return
	}
	var ids []string
	for _, a := range d.Attachments {
		if a.MediaID != "" {
			ids = append(ids, a.MediaID)
		}
	}
	if len(ids) == 0 {
		return
	}
	if err := in.opts.RemoveMedia(context.WithoutCancel(ctx), ids); err != nil {
		in.log.Error("inbound: cannot remove the attachments of an email that is not posted; they expire with media.url_ttl",
			"uid", row.UID, "folder", row.Folder, "state", row.State, "err", err)
	}
}
