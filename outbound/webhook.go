package outbound

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/mail"
	"strings"
	"sync"
	"time"

	"mailgate/store"
	"mailgate/userlike"
)

// MaxWebhookBody is the largest webhook body accepted; larger ones are
// answered 413.
const MaxWebhookBody = 1 << 20

// DefaultCoalesce is how long the webhook holds an operator's message for
// more messages to the same contact, when WebhookChannel.Coalesce is zero.
const DefaultCoalesce = 10 * time.Second

// WebhookChannel is what the webhook needs to know about one channel.
type WebhookChannel struct {
	// Name is the channel name, the last segment of the webhook path.
	Name string
	// OutboundToken is the token Userlike sends in API-SECURITY-TOKEN. An
	// empty token refuses every request.
	OutboundToken string
	// Debug logs every payload, with secret-looking fields removed.
	Debug bool
	// Coalesce is how long a message waits for more messages to the same
	// contact (each one extends the wait, up to store.OutboxCoalesceLimit
	// after the first); 0 means DefaultCoalesce, a negative value sends at
	// once.
	Coalesce time.Duration
}

// WebhookOptions configures a Webhook.
type WebhookOptions struct {
	// Channels looks a channel up by name.
	Channels func(name string) (WebhookChannel, bool)
	// DB is where operator messages are queued.
	DB *store.DB
	// Wake tells the outbox worker that the channel has items due at due
	// (the zero time: now, or cancelled ones); optional. It must not
	// block.
	Wake func(channel string, due time.Time)
	// Prefix is the path the webhook is mounted under; the rest of the
	// path is the channel name. Default "/userlike/".
	Prefix string
	// Logger receives one line per request outcome that needs attention.
	Logger *slog.Logger
	// Now returns the current time (for the dedupe key's time bucket and
	// the coalescing wait). Default time.Now.
	Now func() time.Time
}

// Webhook is the http.Handler for Userlike's outbound POSTs:
// POST <Prefix><channel-name>. It checks the token, decodes the payload and
// queues operator messages in the outbox, answering 200 only once the
// message is committed, so that Userlike retries everything mailgate did
// not store.
//
// Answers, all with a small JSON body:
//
//	404 a path outside Prefix    405 not POST (with Allow)
//	401 wrong or missing token, or an unknown channel (the same answer,
//	    so the channel names stay secret; logged at most once per
//	    refusalLogInterval)      413 body over MaxWebhookBody
//	400 malformed JSON, or a message without contact address
//	200 {"status":"queued","id":N}, {"status":"duplicate"},
//	    {"status":"ignored"} (no text and no media), {"status":"cancelled"}
//	    or {"status":"not-cancelled"} (is_deleted)
//	503 the store failed; Userlike retries
type Webhook struct {
	opts     WebhookOptions
	log      *slog.Logger
	refusals logLimiter
}

// NewWebhook returns a Webhook for opts.
func NewWebhook(opts WebhookOptions) *Webhook {
	if opts.Prefix == "" {
		opts.Prefix = "/userlike/"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Wake == nil {
		opts.Wake = func(string, time.Time) {}
	}
	if opts.Channels == nil {
		opts.Channels = func(string) (WebhookChannel, bool) { return WebhookChannel{}, false }
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Webhook{opts: opts, log: log, refusals: logLimiter{every: refusalLogInterval}}
}

// ServeHTTP implements http.Handler.
func (h *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, h.opts.Prefix)
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
		return
	}
	// An unknown channel gets the same 401 as a wrong token, after the same
	// work, so that a caller without a token cannot tell which channel
	// names exist.
	var ch WebhookChannel
	known := name != "" && !strings.Contains(name, "/")
	if known {
		ch, known = h.opts.Channels(name)
	}
	if !tokenMatches(r.Header.Get(userlike.TokenHeader), ch.OutboundToken) || !known {
		if n, ok := h.refusals.allow(h.opts.Now()); ok {
			h.log.Warn("webhook: request with a wrong or missing token, or for an unknown channel, refused",
				"remote", r.RemoteAddr, "path", clipPath(r.URL.Path), "suppressed_since_last", n)
		}
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
		return
	}
	log := h.log.With("channel", ch.Name)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxWebhookBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			log.Warn("webhook: body over the limit refused", "limit", MaxWebhookBody)
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "body too large"})
			return
		}
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "cannot read the body"})
		return
	}
	// Decode first, then redact: DecodeOutbound refuses hostile nesting
	// before the debug log copies anything.
	msg, err := userlike.DecodeOutbound(body)
	if ch.Debug && err == nil {
		log.Info("webhook: payload", "payload", string(userlike.RedactPayload(body)))
	}
	if err != nil {
		log.Warn("webhook: payload refused", "err", err, "bytes", len(body))
		reason := "malformed JSON payload"
		if errors.Is(err, userlike.ErrNoContact) {
			reason = "no contact address"
		}
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": reason})
		return
	}
	now := h.opts.Now()
	ctx := r.Context()

	if msg.Deleted {
		h.cancel(w, r, log, ch, msg, now)
		return
	}
	if !msg.IsMessage() {
		log.Debug("webhook: payload without text or media ignored", "event", msg.Event)
		writeJSON(w, http.StatusOK, map[string]string{"status": "ignored"})
		return
	}
	if !validContact(msg.Contact) {
		log.Warn("webhook: contact is not an email address", "contact", msg.Contact)
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "contact is not an email address"})
		return
	}
	coalesce := ch.Coalesce
	if coalesce == 0 {
		coalesce = DefaultCoalesce
	}
	it := &store.OutboxItem{
		Channel:    ch.Name,
		Contact:    msg.Contact,
		UserlikeID: msg.DedupeKey(now),
		Operator:   msg.Operator,
		Text:       msg.Text,
		MediaURL:   msg.MediaURL,
		SendAfter:  now.Add(max(coalesce, 0)),
	}
	id, dup, err := h.opts.DB.Enqueue(ctx, it)
	if err != nil {
		log.Error("webhook: cannot queue an operator message; Userlike will retry", "err", err, "contact", msg.Contact)
		writeStoreUnavailable(w)
		return
	}
	if dup {
		log.Info("webhook: duplicate operator message ignored", "contact", msg.Contact, "outbox_id", id)
		writeJSON(w, http.StatusOK, map[string]string{"status": "duplicate"})
		return
	}
	log.Debug("webhook: operator message queued", "contact", msg.Contact, "outbox_id", id, "send_after", it.SendAfter)
	h.opts.Wake(ch.Name, it.SendAfter)
	writeJSON(w, http.StatusOK, map[string]any{"status": "queued", "id": id})
}

// cancel handles an is_deleted payload: the queued item is withdrawn; one
// already sent cannot be, which is logged.
func (h *Webhook) cancel(w http.ResponseWriter, r *http.Request, log *slog.Logger, ch WebhookChannel, msg *userlike.Outbound, now time.Time) {
	if msg.ID == "" && !msg.IsMessage() {
		log.Warn("webhook: deleted message without id or content; nothing to cancel", "contact", msg.Contact)
		writeJSON(w, http.StatusOK, map[string]string{"status": "ignored"})
		return
	}
	cancelled, state, err := h.opts.DB.CancelOutbox(r.Context(), ch.Name, msg.DedupeKey(now))
	switch {
	case errors.Is(err, store.ErrNotFound):
		log.Warn("webhook: deleted message was never queued; nothing to cancel", "contact", msg.Contact, "userlike_id", msg.ID)
		writeJSON(w, http.StatusOK, map[string]string{"status": "not-cancelled"})
	case err != nil:
		log.Error("webhook: cannot cancel a deleted message; Userlike will retry", "err", err, "contact", msg.Contact)
		writeStoreUnavailable(w)
	case cancelled:
		log.Info("webhook: deleted message cancelled before sending", "contact", msg.Contact, "userlike_id", msg.ID)
		h.opts.Wake(ch.Name, time.Time{})
		writeJSON(w, http.StatusOK, map[string]string{"status": "cancelled"})
	case state == store.OutboxSending:
		log.Warn("webhook: operator deleted a message whose email is being sent; if this attempt fails it is not retried",
			"contact", msg.Contact, "userlike_id", msg.ID)
		writeJSON(w, http.StatusOK, map[string]string{"status": "not-cancelled", "state": state})
	default:
		log.Warn("webhook: operator deleted a message that is already "+state+"; the email cannot be recalled",
			"contact", msg.Contact, "userlike_id", msg.ID, "state", state)
		writeJSON(w, http.StatusOK, map[string]string{"status": "not-cancelled", "state": state})
	}
}

// validContact reports whether c is a bare addr-spec that mail can be
// sent to.
func validContact(c string) bool {
	a, err := mail.ParseAddress(c)
	return err == nil && a.Name == "" && strings.EqualFold(a.Address, c) && !strings.ContainsAny(c, "\r\n<>")
}

// tokenMatches compares got with want in constant time. Both are hashed
// first, so that neither the comparison nor its length check depends on
// the secret's length. An empty want matches nothing.
func tokenMatches(got, want string) bool {
	g, wt := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], wt[:]) == 1 && want != ""
}

// refusalLogInterval is the least time between two log lines about refused
// webhook requests: an unauthenticated caller must not be able to fill the
// journal.
const refusalLogInterval = 10 * time.Second

// logLimiter lets one log line through per interval and counts the ones it
// held back.
type logLimiter struct {
	every time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow reports whether a line may be logged at now and, if so, how many
// were held back since the last one.
func (l *logLimiter) allow(now time.Time) (suppressed int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return 0, false
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return n, true
}

// clipPath shortens a request path for a log line.
func clipPath(p string) string {
	if len(p) > 80 {
		return p[:80] + "..."
	}
	return p
}

// writeStoreUnavailable answers 503: Userlike retries.
func writeStoreUnavailable(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "30")
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily unavailable"})
}

// writeJSON answers status with v as a compact JSON body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
