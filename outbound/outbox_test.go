package outbound

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mailgate/internal/fakeclock"
	"mailgate/internal/syncbuf"
	"mailgate/mailtext"
	"mailgate/userlike/userliketest"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"
	gmmail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-smtp"

	"mailgate/mailparse"
	"mailgate/msgid"
	"mailgate/outbound/safefetch"
	"mailgate/smtpout"
	"mailgate/store"
	"mailgate/userlike"
)

// ---- the SMTP relay ----

// relayMsg is one message the test relay accepted.
type relayMsg struct {
	from string
	to   []string
	data []byte
}

// testRelay is a go-smtp server on 127.0.0.1. rcpt, when set, decides the
// answer to each RCPT TO (n counts them from 1).
type testRelay struct {
	addr string

	mu    sync.Mutex
	rcpt  func(n int, to string) error
	conns int
	rcpts int
	msgs  []relayMsg
}

func startRelay(t testing.TB) *testRelay {
	t.Helper()
	r := &testRelay{}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		r.mu.Lock()
		r.conns++
		r.mu.Unlock()
		return &relaySession{r: r}, nil
	}))
	srv.Domain = "relay.test"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return r
}

func (r *testRelay) setRcpt(f func(n int, to string) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rcpt = f
}

func (r *testRelay) delivered() []relayMsg {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]relayMsg(nil), r.msgs...)
}

func (r *testRelay) counts() (conns, rcpts int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns, r.rcpts
}

type relaySession struct {
	r   *testRelay
	cur relayMsg
}

func (s *relaySession) Reset()        { s.cur = relayMsg{} }
func (s *relaySession) Logout() error { return nil }
func (s *relaySession) Mail(from string, _ *smtp.MailOptions) error {
	s.cur = relayMsg{from: from}
	return nil
}

func (s *relaySession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.r.mu.Lock()
	s.r.rcpts++
	n, hook := s.r.rcpts, s.r.rcpt
	s.r.mu.Unlock()
	if hook != nil {
		if err := hook(n, to); err != nil {
			return err
		}
	}
	s.cur.to = append(s.cur.to, to)
	return nil
}

func (s *relaySession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.data = b
	s.r.mu.Lock()
	s.r.msgs = append(s.r.msgs, s.cur)
	s.r.mu.Unlock()
	return nil
}

// ---- the fake Userlike and the media server ----

// fakeUserlike records the inbound POSTs (failure notices) it gets.
type fakeUserlike struct {
	*userliketest.Inbound
	srv *httptest.Server
}

func startUserlike(t testing.TB) *fakeUserlike {
	f := &fakeUserlike{Inbound: userliketest.NewInbound("inbound-token")}
	f.srv = httptest.NewServer(f.Inbound)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeUserlike) notices() []userlike.InboundMessage {
	var out []userlike.InboundMessage
	for _, p := range f.Accepted() {
		out = append(out, p.Message)
	}
	return out
}

// ---- the fixture ----

var testMsgIDKey = []byte("0123456789abcdef0123456789abcdef")

// outboundFixture wires a webhook and an outbox worker for channel
// "support" to a real store, a go-smtp relay and a fake Userlike.
type outboundFixture struct {
	t       testing.TB
	clk     *fakeclock.Clock
	dbPath  string
	db      *store.DB
	relay   *testRelay
	ul      *fakeUserlike
	sent    *sentFolder
	logs    *syncbuf.Buffer
	hook    *Webhook
	out     *Outbox
	gen     *msgid.Generator
	fetcher *safefetch.Fetcher
	maxSize int64
	// replyCc and own are the channel's ReplyCc and OwnAddresses.
	replyCc bool
	own     []string
	// tokens, when set, makes the relay login an OAuth2 one as
	// support@acme.test.
	tokens smtpout.TokenSource
}

// sentFolder records AppendSent calls.
type sentFolder struct {
	mu   sync.Mutex
	msgs [][]byte
	err  error
}

func (s *sentFolder) AppendSent(_ context.Context, raw []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, raw)
	return s.err
}

func (s *sentFolder) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

func newOutboundFixture(t testing.TB) *outboundFixture {
	t.Helper()
	return newOutboundFixtureWith(t, nil)
}

// newOutboundFixtureWith lets setup change the fixture before the store
// and the worker are opened.
func newOutboundFixtureWith(t testing.TB, setup func(*outboundFixture)) *outboundFixture {
	t.Helper()
	f := &outboundFixture{
		t:      t,
		clk:    fakeclock.New(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)),
		dbPath: filepath.Join(t.TempDir(), "mailgate.db"),
		relay:  startRelay(t),
		ul:     startUserlike(t),
		sent:   &sentFolder{},
		logs:   &syncbuf.Buffer{},
	}
	var err error
	if f.gen, err = msgid.NewGenerator(testMsgIDKey, "mailgate.test"); err != nil {
		t.Fatal(err)
	}
	f.fetcher = safefetch.New(safefetch.Options{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Timeout: 10 * time.Second})
	if setup != nil {
		setup(f)
	}
	f.open()
	return f
}

// open (re)opens the store and builds a fresh webhook and worker, as a
// restarted daemon would.
func (f *outboundFixture) open() {
	t := f.t
	db, err := store.Open(context.Background(), f.dbPath, store.Options{Now: f.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f.db = db
	if _, err := db.RequeueSending(context.Background()); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sopts := smtpout.SenderOptions{Address: f.relay.addr, Security: smtpout.SecurityNone,
		HELO: "mailgate.test", Timeout: 10 * time.Second}
	if f.tokens != nil {
		sopts.Username, sopts.Tokens = "support@acme.test", f.tokens
	}
	sender, err := smtpout.NewSender(sopts)
	if err != nil {
		t.Fatal(err)
	}
	client := userlike.NewClient(userlike.ClientOptions{InboundURL: f.ul.srv.URL, Token: "inbound-token"})
	channel := Channel{
		Name:           "support",
		From:           mail.Address{Name: "ACME Support", Address: "support@acme.test"},
		ReplyTo:        "support@acme.test",
		Sender:         sender,
		Notify:         client,
		NotifyFailures: true,
		SentFolder:     f.sent,
		ReplyCc:        f.replyCc,
		OwnAddresses:   f.own,
	}
	f.out, err = New(Options{
		DB: db,
		Channels: func(name string) (Channel, bool) {
			return channel, name == "support"
		},
		Fetcher:      f.fetcher,
		MsgID:        f.gen,
		MaxMediaSize: f.maxSize,
		TempDir:      t.TempDir(),
		Logger:       logger,
		Now:          f.clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.hook = NewWebhook(WebhookOptions{
		Channels: func(name string) (WebhookChannel, bool) {
			return WebhookChannel{Name: "support", OutboundToken: testOutboundToken}, name == "support"
		},
		DB:     db,
		Wake:   f.out.Wake,
		Logger: logger,
		Now:    f.clk.Now,
	})
}

// post sends one operator message through the webhook.
func (f *outboundFixture) post(payload map[string]any) map[string]any {
	f.t.Helper()
	b, _ := json.Marshal(payload)
	req := httptest.NewRequest("POST", "/userlike/support", bytes.NewReader(b))
	req.Header.Set(userlike.TokenHeader, testOutboundToken)
	rec := httptest.NewRecorder()
	f.hook.ServeHTTP(rec, req)
	if rec.Code != 200 {
		f.t.Fatalf("webhook %s: %d %s", b, rec.Code, rec.Body)
	}
	var m map[string]any
	json.Unmarshal(rec.Body.Bytes(), &m)
	return m
}

// flush runs one round of the worker.
func (f *outboundFixture) flush() {
	f.t.Helper()
	if err := f.out.Flush(context.Background()); err != nil {
		f.t.Fatal(err)
	}
}

// customerMail records an email from contact as the inbound side does.
func (f *outboundFixture) customerMail(uid uint32, contact, messageID, subject string) {
	f.t.Helper()
	_, err := f.db.RecordInbound(context.Background(), &store.Inbound{
		Channel: "support", Folder: "INBOX", UIDValidity: 1, UID: uid, DedupeKey: "mid:" + messageID,
		MessageID: messageID, Contact: contact, Subject: subject, ThreadSubject: mailtext.NormalizeSubject(subject),
		Posts: [][]byte{[]byte(`{"text":"x"}`)}, ArrivedAt: f.clk.Now(),
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

// parsed is a delivered email, taken apart.
type parsed struct {
	header      message.Header
	text        string
	attachments map[string][]byte // filename -> content
}

func parseMail(t *testing.T, raw []byte) parsed {
	t.Helper()
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("delivered mail does not parse: %v\n%s", err, raw)
	}
	p := parsed{header: e.Header, attachments: map[string][]byte{}}
	var walk func(e *message.Entity)
	walk = func(e *message.Entity) {
		if mr := e.MultipartReader(); mr != nil {
			for {
				part, err := mr.NextPart()
				if err == io.EOF {
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				walk(part)
			}
		}
		body, err := io.ReadAll(e.Body)
		if err != nil {
			t.Fatal(err)
		}
		disp, dparams, _ := e.Header.ContentDisposition()
		ct, _, _ := e.Header.ContentType()
		switch {
		case disp == "attachment":
			p.attachments[dparams["filename"]] = body
		case ct == "text/plain" && p.text == "":
			p.text = strings.ReplaceAll(string(body), "\r\n", "\n")
		}
	}
	walk(e)
	return p
}

// ---- tests ----

func TestOutboundCoalescesAndThreads(t *testing.T) {
	f := newOutboundFixture(t)
	const jane = "jane@example.com"
	f.customerMail(1, jane, "c1@mail.example.com", "Order 1234")

	// Three quick operator messages become one email.
	for i, text := range []string{"Hello Jane,", "your order has shipped.", "Kind regards"} {
		if i > 0 {
			f.clk.Add(3 * time.Second)
		}
		f.post(map[string]any{"email": jane, "text": text, "operator_name": "Olga", "id": fmt.Sprint("op-", i)})
	}
	f.clk.Add(9 * time.Second) // the last one still waits
	f.flush()
	if n := len(f.relay.delivered()); n != 0 {
		t.Fatalf("%d emails sent before the coalescing wait ended", n)
	}
	f.clk.Add(2 * time.Second)
	f.flush()
	msgs := f.relay.delivered()
	if len(msgs) != 1 {
		t.Fatalf("%d emails sent, want 1", len(msgs))
	}
	m := msgs[0]
	if m.from != "support@acme.test" || fmt.Sprint(m.to) != "["+jane+"]" {
		t.Fatalf("envelope %s -> %v", m.from, m.to)
	}
	p := parseMail(t, m.data)
	h := p.header
	if want := "Hello Jane,\n\nyour order has shipped.\n\nKind regards"; !strings.Contains(p.text, want) {
		t.Fatalf("text %q does not hold %q", p.text, want)
	}
	from, _ := mail.ParseAddress(h.Get("From"))
	if from == nil || from.Name != "Olga (ACME Support)" || from.Address != "support@acme.test" {
		t.Fatalf("From = %q", h.Get("From"))
	}
	mid1 := strings.Trim(h.Get("Message-Id"), "<>")
	for name, want := range map[string]string{
		"Subject":            "Re: Order 1234",
		"In-Reply-To":        "<c1@mail.example.com>",
		"References":         "<c1@mail.example.com>",
		"Reply-To":           "<support@acme.test>",
		"X-Mailgate-Channel": "support",
		"Thread-Topic":       "Order 1234",
		"Auto-Submitted":     "",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if !f.gen.IsOwn(mid1) {
		t.Errorf("Message-ID %q is not ours", mid1)
	}
	if h.Get("Thread-Index") == "" {
		t.Error("no Thread-Index")
	}
	th, _, _ := f.db.Thread(context.Background(), "support", jane)
	if th.LastOurID != mid1 {
		t.Fatalf("thread's last id = %q, want %q", th.LastOurID, mid1)
	}
	if f.sent.count() != 1 {
		t.Fatalf("Sent folder got %d copies", f.sent.count())
	}
	counts, _ := f.db.OutboxCounts(context.Background(), "support")
	if fmt.Sprint(counts) != "map[sent:3]" {
		t.Fatalf("outbox = %v", counts)
	}

	// Jane answers; the next reply continues the thread.
	f.clk.Add(time.Hour)
	f.customerMail(2, jane, "c2@mail.example.com", "Re: Re: Order 1234")
	f.post(map[string]any{"email": jane, "text": "You're welcome!", "operator_name": "Piet", "id": "op-9"})
	f.clk.Add(15 * time.Second)
	f.flush()
	msgs = f.relay.delivered()
	if len(msgs) != 2 {
		t.Fatalf("%d emails, want 2", len(msgs))
	}
	h2 := parseMail(t, msgs[1].data).header
	if h2.Get("Subject") != "Re: Order 1234" || h2.Get("In-Reply-To") != "<c2@mail.example.com>" ||
		h2.Get("References") != fmt.Sprintf("<c1@mail.example.com> <%s> <c2@mail.example.com>", mid1) {
		t.Fatalf("second reply: Subject %q In-Reply-To %q References %q", h2.Get("Subject"), h2.Get("In-Reply-To"), h2.Get("References"))
	}
	if from, _ := mail.ParseAddress(h2.Get("From")); from == nil || from.Name != "Piet (ACME Support)" {
		t.Fatalf("second From = %q", h2.Get("From"))
	}
	if ti := h.Get("Thread-Index"); !strings.HasPrefix(h2.Get("Thread-Index"), ti[:28]) {
		t.Errorf("Thread-Index %q does not continue %q", h2.Get("Thread-Index"), ti)
	}
}

func TestOutboundNewContactSubject(t *testing.T) {
	f := newOutboundFixture(t)
	f.post(map[string]any{"email": "new@example.com", "text": "Hi, following up on your call."})
	f.clk.Add(11 * time.Second)
	f.flush()
	msgs := f.relay.delivered()
	if len(msgs) != 1 {
		t.Fatalf("%d emails", len(msgs))
	}
	h := parseMail(t, msgs[0].data).header
	if h.Get("Subject") != "Your message to ACME Support" || h.Get("In-Reply-To") != "" {
		t.Fatalf("Subject %q, In-Reply-To %q", h.Get("Subject"), h.Get("In-Reply-To"))
	}
	// Without an operator name the From is the channel's name.
	if from, _ := mail.ParseAddress(h.Get("From")); from == nil || from.Name != "ACME Support" {
		t.Fatalf("From = %q", h.Get("From"))
	}
	// The next reply keeps the subject, as a reply.
	f.post(map[string]any{"email": "new@example.com", "text": "Another thing."})
	f.clk.Add(11 * time.Second)
	f.flush()
	msgs = f.relay.delivered()
	h2 := parseMail(t, msgs[1].data).header
	if h2.Get("Subject") != "Re: Your message to ACME Support" || h2.Get("In-Reply-To") != h.Get("Message-Id") {
		t.Fatalf("second: Subject %q, In-Reply-To %q", h2.Get("Subject"), h2.Get("In-Reply-To"))
	}
}

func TestOutboundCoalesceAcrossRestart(t *testing.T) {
	f := newOutboundFixture(t)
	const jane = "jane@example.com"
	f.post(map[string]any{"email": jane, "text": "one", "id": "r-1"})
	f.clk.Add(2 * time.Second)
	f.post(map[string]any{"email": jane, "text": "two", "id": "r-2"})
	f.db.Close()

	f.clk.Add(2 * time.Second)
	f.open() // a new daemon on the same database
	f.post(map[string]any{"email": jane, "text": "three", "id": "r-3"})
	// Userlike retries an id it already delivered: still queued once.
	if got := f.post(map[string]any{"email": jane, "text": "two", "id": "r-2"}); got["status"] != "duplicate" {
		t.Fatalf("retried delivery = %v", got)
	}
	f.clk.Add(11 * time.Second)
	f.flush()
	msgs := f.relay.delivered()
	if len(msgs) != 1 {
		t.Fatalf("%d emails, want 1", len(msgs))
	}
	if text := parseMail(t, msgs[0].data).text; !strings.Contains(text, "one\n\ntwo\n\nthree") {
		t.Fatalf("text = %q", text)
	}
}

func TestOutboundCoalesceCap(t *testing.T) {
	f := newOutboundFixture(t)
	start := f.clk.Now()
	for i := range 8 {
		f.post(map[string]any{"email": "jane@example.com", "text": fmt.Sprint("part ", i), "id": fmt.Sprint("cap-", i)})
		f.clk.Add(8 * time.Second)
		f.flush()
	}
	// 64s after the first message, the cap (60s) has sent everything.
	if f.clk.Now().Sub(start) != 64*time.Second {
		t.Fatal("test arithmetic")
	}
	msgs := f.relay.delivered()
	if len(msgs) != 1 {
		t.Fatalf("%d emails, want one sent at the 60s cap", len(msgs))
	}
	if text := parseMail(t, msgs[0].data).text; !strings.Contains(text, "part 0") || !strings.Contains(text, "part 7") {
		t.Fatalf("text = %q", text)
	}
}

func TestOutboundDeletedNeverSent(t *testing.T) {
	f := newOutboundFixture(t)
	const jane = "jane@example.com"
	f.post(map[string]any{"email": jane, "text": "wrong customer!", "id": "d-1"})
	f.post(map[string]any{"email": jane, "text": "the real answer", "id": "d-2"})
	f.post(map[string]any{"email": "bob@example.com", "text": "for bob only", "id": "d-3"})
	if got := f.post(map[string]any{"email": jane, "message": map[string]any{"id": "d-1", "is_deleted": true}}); got["status"] != "cancelled" {
		t.Fatalf("delete = %v", got)
	}
	if got := f.post(map[string]any{"email": "bob@example.com", "id": "d-3", "is_deleted": true}); got["status"] != "cancelled" {
		t.Fatalf("delete = %v", got)
	}
	f.clk.Add(time.Minute)
	f.flush()
	msgs := f.relay.delivered()
	if len(msgs) != 1 || fmt.Sprint(msgs[0].to) != "["+jane+"]" {
		t.Fatalf("delivered %d emails: %+v", len(msgs), msgs)
	}
	if text := parseMail(t, msgs[0].data).text; strings.Contains(text, "wrong customer") || !strings.Contains(text, "the real answer") {
		t.Fatalf("text = %q", text)
	}
}

func TestOutboundRetryThenSent(t *testing.T) {
	f := newOutboundFixture(t)
	f.relay.setRcpt(func(n int, to string) error {
		if n == 1 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
		}
		return nil
	})
	f.post(map[string]any{"email": "jane@example.com", "text": "hello", "id": "t-1"})
	f.clk.Add(11 * time.Second)
	f.flush()
	if len(f.relay.delivered()) != 0 {
		t.Fatal("delivered despite 451")
	}
	it, _ := f.db.Outbox(context.Background(), 1)
	if it.State != store.OutboxQueued || it.Attempts != 1 || !it.SendAfter.Equal(f.clk.Now().Add(time.Minute)) ||
		!strings.Contains(it.LastError, "451 4.3.0 try again later") {
		t.Fatalf("after 451: %+v", it)
	}
	firstID := it.MessageID
	// Before the backoff ends nothing is tried.
	f.clk.Add(30 * time.Second)
	f.flush()
	if _, rcpts := f.relay.counts(); rcpts != 1 {
		t.Fatalf("retried before the backoff: %d RCPTs", rcpts)
	}
	f.clk.Add(30 * time.Second)
	f.flush()
	msgs := f.relay.delivered()
	if len(msgs) != 1 {
		t.Fatalf("%d emails after the retry", len(msgs))
	}
	retried := parseMail(t, msgs[0].data)
	if got := strings.Trim(retried.header.Get("Message-Id"), "<>"); got != firstID {
		t.Errorf("retry changed the Message-ID: %q, first attempt %q", got, firstID)
	}
	if it, _ := f.db.Outbox(context.Background(), 1); it.State != store.OutboxSent || it.Attempts != 2 {
		t.Fatalf("after the retry: %+v", it)
	}
	if len(f.ul.notices()) != 0 {
		t.Fatalf("notice posted for a temporary failure: %v", f.ul.notices())
	}
}

func TestOutboundPermanentFailureNotifies(t *testing.T) {
	f := newOutboundFixture(t)
	f.relay.setRcpt(func(n int, to string) error {
		if to == "jane@example.com" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "user unknown"}
		}
		return nil
	})
	f.post(map[string]any{"email": "jane@example.com", "text": "hello", "id": "p-1"})
	f.post(map[string]any{"email": "bob@example.com", "text": "hello bob", "id": "p-2"})
	f.clk.Add(11 * time.Second)
	f.flush()
	// One connection for the burst; bob's email still goes out.
	if conns, _ := f.relay.counts(); conns != 1 {
		t.Errorf("%d SMTP connections for one burst", conns)
	}
	if msgs := f.relay.delivered(); len(msgs) != 1 || msgs[0].to[0] != "bob@example.com" {
		t.Fatalf("delivered %+v", msgs)
	}
	it, _ := f.db.Outbox(context.Background(), 1)
	if it.State != store.OutboxFailed || it.LastError != "550 5.1.1 user unknown" {
		t.Fatalf("after 550: %+v", it)
	}
	notices := f.ul.notices()
	want := userlike.InboundMessage{Email: "jane@example.com",
		Text: "[mailgate] Your reply could not be delivered to jane@example.com: 550 5.1.1 user unknown"}
	if len(notices) != 1 || notices[0] != want {
		t.Fatalf("notices = %+v, want %+v", notices, want)
	}
	if !strings.Contains(f.logs.String(), "level=ERROR") {
		t.Error("the failure was not logged at ERROR")
	}
	// Never tried again.
	f.clk.Add(3 * time.Hour)
	f.flush()
	if _, rcpts := f.relay.counts(); rcpts != 2 {
		t.Fatalf("failed item tried again: %d RCPTs", rcpts)
	}
}

func TestOutboundGivesUpAfterMaxAge(t *testing.T) {
	f := newOutboundFixture(t)
	f.relay.setRcpt(func(int, string) error {
		return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "greylisted"}
	})
	f.post(map[string]any{"email": "jane@example.com", "text": "hello", "id": "g-1"})
	start := f.clk.Now()
	f.clk.Add(11 * time.Second)
	var waits []time.Duration
	for range 100 {
		f.flush()
		it, _ := f.db.Outbox(context.Background(), 1)
		if it.State == store.OutboxFailed {
			break
		}
		waits = append(waits, it.SendAfter.Sub(f.clk.Now()))
		f.clk.Add(it.SendAfter.Sub(f.clk.Now()))
	}
	want := []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 2 * time.Hour}
	if len(waits) < len(want) || fmt.Sprint(waits[:len(want)]) != fmt.Sprint(want) {
		t.Fatalf("waits = %v, want %v then 2h", waits, want)
	}
	if age := f.clk.Now().Sub(start); age < DefaultMaxAge-2*time.Hour || age > DefaultMaxAge {
		t.Fatalf("gave up after %v", age)
	}
	it, _ := f.db.Outbox(context.Background(), 1)
	if it.State != store.OutboxFailed || !strings.Contains(it.LastError, "greylisted") {
		t.Fatalf("item = %+v", it)
	}
	if n := f.ul.notices(); len(n) != 1 || !strings.Contains(n[0].Text, "450 4.7.0 greylisted") {
		t.Fatalf("notices = %+v", n)
	}
}

// dsnTemplate is a bounce of one of our replies; %s is its Message-ID.
const dsnTemplate = "From: Mail Delivery System <MAILER-DAEMON@mx.acme.test>\r\n" +
	"To: support@acme.test\r\n" +
	"Subject: Undelivered Mail Returned to Sender\r\n" +
	"Message-ID: <bounce-1@mx.acme.test>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n" +
	"\r\n" +
	"--B\r\n" +
	"Content-Type: text/plain\r\n" +
	"\r\n" +
	"Your message could not be delivered.\r\n" +
	"--B\r\n" +
	"Content-Type: message/delivery-status\r\n" +
	"\r\n" +
	"Reporting-MTA: dns; mx.acme.test\r\n" +
	"\r\n" +
	"Final-Recipient: rfc822; jane@example.com\r\n" +
	"Action: %s\r\n" +
	"Status: 5.1.1\r\n" +
	"Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n" +
	"\r\n" +
	"--B\r\n" +
	"Content-Type: text/rfc822-headers\r\n" +
	"\r\n" +
	"From: Olga (ACME Support) <support@acme.test>\r\n" +
	"To: jane@example.com\r\n" +
	"Message-ID: <%s>\r\n" +
	"\r\n" +
	"--B--\r\n"

func parseReport(t *testing.T, raw string) *mailparse.Report {
	t.Helper()
	e, err := mailparse.Parse(context.Background(), strings.NewReader(raw), mailparse.Options{})
	if err != nil || e.Report == nil {
		t.Fatalf("DSN does not parse as a report: %v", err)
	}
	return e.Report
}

func TestHandleBounce(t *testing.T) {
	f := newOutboundFixture(t)
	ctx := context.Background()
	f.post(map[string]any{"email": "jane@example.com", "text": "hello", "id": "b-1"})
	f.clk.Add(11 * time.Second)
	f.flush()
	it, _ := f.db.Outbox(ctx, 1)
	if it.State != store.OutboxSent {
		t.Fatalf("not sent: %+v", it)
	}

	// A delay notice is matched but changes nothing.
	delayed := fmt.Sprintf(dsnTemplate, "delayed", it.MessageID)
	if matched, err := f.out.HandleBounce(ctx, "support", parseReport(t, delayed), []byte(delayed)); !matched || err != nil {
		t.Fatalf("HandleBounce(delayed) = %v, %v", matched, err)
	}
	if got, _ := f.db.Outbox(ctx, 1); got.State != store.OutboxSent {
		t.Fatalf("a delay failed the item: %+v", got)
	}
	// Reports about mail we did not send, or of another channel, do not match.
	foreign := fmt.Sprintf(dsnTemplate, "failed", "someone-else@example.org")
	if matched, err := f.out.HandleBounce(ctx, "support", parseReport(t, foreign), nil); matched || err != nil {
		t.Fatalf("HandleBounce(foreign) = %v, %v", matched, err)
	}
	bounce := fmt.Sprintf(dsnTemplate, "failed", it.MessageID)
	if matched, err := f.out.HandleBounce(ctx, "other", parseReport(t, bounce), nil); matched || err != nil {
		t.Fatalf("HandleBounce(other channel) = %v, %v", matched, err)
	}
	if matched, err := f.out.HandleBounce(ctx, "support", nil, nil); matched || err != nil {
		t.Fatalf("HandleBounce(nil) = %v, %v", matched, err)
	}

	matched, err := f.out.HandleBounce(ctx, "support", parseReport(t, bounce), []byte(bounce))
	if !matched || err != nil {
		t.Fatalf("HandleBounce = %v, %v", matched, err)
	}
	got, _ := f.db.Outbox(ctx, 1)
	if got.State != store.OutboxFailed || !strings.Contains(got.LastError, "550 5.1.1 user unknown") {
		t.Fatalf("bounced item = %+v", got)
	}
	// The report's own text never reaches the conversation: a fixed
	// sentence and the status code.
	want := "[mailgate] Your reply could not be delivered to jane@example.com: the recipient's mail server returned it (status 5.1.1)"
	if n := f.ul.notices(); len(n) != 1 || n[0].Text != want || n[0].Email != "jane@example.com" {
		t.Fatalf("notices = %+v", n)
	}
	// The same bounce again: matched, no second notice.
	if matched, _ := f.out.HandleBounce(ctx, "support", parseReport(t, bounce), nil); !matched || len(f.ul.notices()) != 1 {
		t.Fatalf("second bounce: matched %v, %d notices", matched, len(f.ul.notices()))
	}
}

func TestOutboundMedia(t *testing.T) {
	pdf := bytes.Repeat([]byte("%PDF-1.4 fake "), 100)
	var mediaHits sync.Map
	media := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mediaHits.Store(r.URL.Path, true)
		switch r.URL.Path {
		case "/files/invoice.pdf":
			w.Header().Set("Content-Type", "application/pdf")
			w.Write(pdf)
		case "/files/huge.bin":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(make([]byte, 64<<10))
		default:
			http.NotFound(w, r)
		}
	}))
	defer media.Close()

	f := newOutboundFixture(t)
	f.maxSize = 32 << 10
	f.open()
	f.post(map[string]any{"email": "jane@example.com", "text": "Here is your invoice.", "id": "m-1"})
	f.post(map[string]any{"email": "jane@example.com", "url": media.URL + "/files/invoice.pdf", "id": "m-2"})
	f.post(map[string]any{"email": "jane@example.com", "url": "http://169.254.169.254/latest/meta-data/secret.txt", "id": "m-3"})
	f.post(map[string]any{"email": "jane@example.com", "url": media.URL + "/files/huge.bin", "id": "m-4"})
	f.post(map[string]any{"email": "jane@example.com", "url": media.URL + "/files/gone.png", "id": "m-5"})
	f.clk.Add(11 * time.Second)
	f.flush()
	msgs := f.relay.delivered()
	if len(msgs) != 1 {
		t.Fatalf("%d emails", len(msgs))
	}
	p := parseMail(t, msgs[0].data)
	if !bytes.Equal(p.attachments["invoice.pdf"], pdf) || len(p.attachments) != 1 {
		t.Fatalf("attachments: %d, invoice %d bytes", len(p.attachments), len(p.attachments["invoice.pdf"]))
	}
	for _, link := range []string{"http://169.254.169.254/latest/meta-data/secret.txt", media.URL + "/files/huge.bin", media.URL + "/files/gone.png"} {
		if !strings.Contains(p.text, link) {
			t.Errorf("text does not link %s:\n%s", link, p.text)
		}
	}
	if !strings.Contains(p.text, "Here is your invoice.") {
		t.Errorf("text = %q", p.text)
	}
	if _, ok := mediaHits.Load("/files/invoice.pdf"); !ok {
		t.Error("the invoice was never fetched")
	}
	if !strings.Contains(f.logs.String(), "169.254.169.254") || !strings.Contains(f.logs.String(), "not downloaded from this address") {
		t.Errorf("the refused metadata URL was not logged as refused:\n%s", f.logs.String())
	}
}

func TestOutboundHeaderInjection(t *testing.T) {
	f := newOutboundFixture(t)
	f.post(map[string]any{"email": "jane@example.com", "text": "hi",
		"operator_name": "Olga\r\nBcc: evil@example.net\r\nX-Evil: 1", "id": "h-1"})
	f.clk.Add(11 * time.Second)
	f.flush()
	msgs := f.relay.delivered()
	if len(msgs) != 1 || len(msgs[0].to) != 1 || msgs[0].to[0] != "jane@example.com" {
		t.Fatalf("delivered %+v", msgs)
	}
	h := parseMail(t, msgs[0].data).header
	if h.Get("Bcc") != "" || h.Get("X-Evil") != "" {
		t.Fatalf("injected header survived: Bcc %q X-Evil %q", h.Get("Bcc"), h.Get("X-Evil"))
	}
	from, err := mail.ParseAddress(h.Get("From"))
	if err != nil || from.Address != "support@acme.test" || strings.ContainsAny(from.Name, "\r\n") {
		t.Fatalf("From = %q (%v)", h.Get("From"), err)
	}
}

func TestFromDisplayName(t *testing.T) {
	ch := Channel{Name: "support", From: mail.Address{Name: "ACME\nSupport", Address: "s@acme.test"}}
	for _, c := range []struct {
		tmpl, operator, want string
	}{
		{"", "Olga", "Olga (ACME Support)"},
		{"", "", "ACME Support"},
		{"", " \r\n ", "ACME Support"},
		{"{operator} from {channel}", "Olga\r\nBcc: x@y", "Olga Bcc: x@y from ACME Support"},
		{"{channel}", "Olga", "ACME Support"},
	} {
		ch.FromTemplate = c.tmpl
		if got := FromDisplayName(ch, c.operator); got != c.want {
			t.Errorf("FromDisplayName(%q, %q) = %q, want %q", c.tmpl, c.operator, got, c.want)
		}
	}
	if got := FromDisplayName(Channel{Name: "support"}, ""); got != "support" {
		t.Errorf("without a display name: %q", got)
	}
}

func TestRetryDelay(t *testing.T) {
	for n, want := range map[int]time.Duration{0: time.Minute, 1: time.Minute, 2: 5 * time.Minute, 3: 15 * time.Minute,
		4: time.Hour, 5: 2 * time.Hour, 50: 2 * time.Hour} {
		if got := RetryDelay(n); got != want {
			t.Errorf("RetryDelay(%d) = %v, want %v", n, got, want)
		}
	}
}

func TestOutboundRun(t *testing.T) {
	f := newOutboundFixture(t)
	// Real time for this one: Run sleeps on real timers.
	f.clk.Set(time.Now())
	realNow := time.Now
	f.out.opts.Now = realNow
	f.hook.opts.Now = realNow
	f.hook.opts.Channels = func(name string) (WebhookChannel, bool) {
		return WebhookChannel{Name: "support", OutboundToken: testOutboundToken, Coalesce: -1}, name == "support"
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.out.Run(ctx) }()

	f.post(map[string]any{"email": "jane@example.com", "text": "sent by the loop", "id": "run-1"})
	deadline := time.Now().Add(20 * time.Second)
	for len(f.relay.delivered()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if len(f.relay.delivered()) != 1 {
		t.Fatalf("the loop did not send the reply")
	}
	if f.out.Heartbeat().IsZero() {
		t.Error("no heartbeat")
	}
}

// FuzzFromDisplayName checks that whatever the operator is called, the
// display name is one line of valid UTF-8.
func FuzzFromDisplayName(f *testing.F) {
	for _, s := range []string{"Olga", "Olga\r\nBcc: x@y", "\u2028", "\xff\xfe", "{channel}{operator}", ""} {
		f.Add(s, "{operator} ({channel})")
	}
	f.Fuzz(func(t *testing.T, operator, tmpl string) {
		ch := Channel{Name: "support", From: mail.Address{Name: "ACME", Address: "s@acme.test"}, FromTemplate: tmpl}
		got := FromDisplayName(ch, operator)
		if strings.ContainsFunc(got, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' }) {
			t.Fatalf("FromDisplayName(%q, %q) = %q has a control character", operator, tmpl, got)
		}
		if !utf8.ValidString(got) || got != strings.TrimSpace(got) {
			t.Fatalf("FromDisplayName(%q, %q) = %q", operator, tmpl, got)
		}
	})
}

// A burst of replies passes the store's barrier once per chunk of marks
// (2 emails, then 8, 32 and 128 at most), each before the chunk's first
// email leaves (its Message-ID is on disk first), and once after the last:
// not once or twice per reply.
func TestOutboundBurstBarriers(t *testing.T) {
	tests := []struct {
		replies int
		// chunks are the first reply of each chunk of marks, from 1.
		chunks []int
	}{
		{replies: 1, chunks: []int{1}},
		{replies: 2, chunks: []int{1}},
		{replies: 3, chunks: []int{1, 3}},
		{replies: 10, chunks: []int{1, 3}},
		{replies: 11, chunks: []int{1, 3, 11}},
		{replies: 40, chunks: []int{1, 3, 11}},
		{replies: 100, chunks: []int{1, 3, 11, 43}},
		{replies: 300, chunks: []int{1, 3, 11, 43, 171, 299}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.replies), func(t *testing.T) {
			f := newOutboundFixture(t)
			for i := range tt.replies {
				f.post(map[string]any{"email": fmt.Sprintf("c%d@example.com", i), "text": "Your parcel left today."})
			}
			f.clk.Add(11 * time.Second)
			atRcpt := make([]uint64, tt.replies+1) // WAL fsyncs when the n-th RCPT TO came
			f.relay.setRcpt(func(n int, to string) error {
				if n <= tt.replies {
					atRcpt[n] = f.db.WALSyncs()
				}
				return nil
			})
			before := f.db.WALSyncs()
			f.flush()
			if n := len(f.relay.delivered()); n != tt.replies {
				t.Fatalf("%d emails delivered, want %d", n, tt.replies)
			}
			for c, first := range tt.chunks {
				if got := atRcpt[first] - before; got < uint64(c+1) {
					t.Errorf("email %d (chunk %d) left after %d WAL fsyncs of the burst, want at least %d", first, c+1, got, c+1)
				}
			}
			if got, want := f.db.WALSyncs()-before, uint64(len(tt.chunks)+1); got != want {
				t.Errorf("the burst of %d replies took %d WAL fsyncs, want %d", tt.replies, got, want)
			}
		})
	}
}

func TestOutboundReplyCc(t *testing.T) {
	tests := []struct {
		name    string
		replyCc bool
		own     []string
		cc      []string
		want    []string
	}{
		{name: "two colleagues", replyCc: true, cc: []string{"bob@example.org", "carol@example.net"},
			want: []string{"bob@example.org", "carol@example.net"}},
		{name: "reply_cc none", cc: []string{"bob@example.org"}},
		{name: "own addresses configured since are left out", replyCc: true,
			own: []string{"Help@acme.test"}, cc: []string{"support@acme.test", "help@acme.test", "bob@example.org", "jane@example.com"},
			want: []string{"bob@example.org"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newOutboundFixtureWith(t, func(f *outboundFixture) { f.replyCc, f.own = tc.replyCc, tc.own })
			ctx := context.Background()
			const jane = "jane@example.com"
			if _, err := f.db.RecordInbound(ctx, &store.Inbound{
				Channel: "support", Folder: "INBOX", UIDValidity: 1, UID: 1, DedupeKey: "mid:c1@mail.example.com",
				MessageID: "c1@mail.example.com", Contact: jane, Subject: "Order 1234", ThreadSubject: "Order 1234",
				Posts: [][]byte{[]byte(`{"text":"x"}`)}, ArrivedAt: f.clk.Now(), Cc: tc.cc,
			}); err != nil {
				t.Fatal(err)
			}
			f.post(map[string]any{"email": jane, "text": "It ships today.", "operator_name": "Olga", "id": "op-1"})
			f.clk.Add(11 * time.Second)
			f.flush()
			msgs := f.relay.delivered()
			if len(msgs) != 1 {
				t.Fatalf("%d emails delivered, want 1", len(msgs))
			}
			if want := append([]string{jane}, tc.want...); strings.Join(msgs[0].to, ",") != strings.Join(want, ",") {
				t.Errorf("RCPT TO %q, want %q", msgs[0].to, want)
			}
			h := gmmail.Header{Header: parseMail(t, msgs[0].data).header}
			cc, err := h.AddressList("Cc")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range cc {
				got = append(got, a.Address)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("Cc header %q, want %q", got, tc.want)
			}
			if irt := h.Get("In-Reply-To"); irt != "<c1@mail.example.com>" {
				t.Errorf("In-Reply-To = %q", irt)
			}
			if len(tc.want) == 0 {
				return
			}
			// A bounce of a colleague's copy does not fail the reply; one
			// about the contact does.
			it, _ := f.db.Outbox(ctx, 1)
			ccBounce := strings.Replace(fmt.Sprintf(dsnTemplate, "failed", it.MessageID), "Final-Recipient: rfc822; jane@example.com", "Final-Recipient: rfc822; "+tc.want[0], 1)
			if matched, err := f.out.HandleBounce(ctx, "support", parseReport(t, ccBounce), nil); !matched || err != nil {
				t.Fatalf("HandleBounce(cc) = %v, %v", matched, err)
			}
			if got, _ := f.db.Outbox(ctx, 1); got.State != store.OutboxSent || len(f.ul.notices()) != 0 {
				t.Fatalf("a colleague's bounce failed the reply: %+v, notices %+v", got, f.ul.notices())
			}
			bounce := fmt.Sprintf(dsnTemplate, "failed", it.MessageID)
			if matched, err := f.out.HandleBounce(ctx, "support", parseReport(t, bounce), nil); !matched || err != nil {
				t.Fatalf("HandleBounce = %v, %v", matched, err)
			}
			if got, _ := f.db.Outbox(ctx, 1); got.State != store.OutboxFailed {
				t.Fatalf("the contact's bounce did not fail the reply: %+v", got)
			}
		})
	}
}

// TestOutboundRefusedCopy: the relay refusing a colleague in Cc does not
// keep the reply from the contact; the operator is told which copy failed.
func TestOutboundRefusedCopy(t *testing.T) {
	f := newOutboundFixtureWith(t, func(f *outboundFixture) { f.replyCc = true })
	f.relay.setRcpt(func(_ int, to string) error {
		if to == "bob@example.org" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	})
	ctx := context.Background()
	const jane = "jane@example.com"
	if _, err := f.db.RecordInbound(ctx, &store.Inbound{
		Channel: "support", Folder: "INBOX", UIDValidity: 1, UID: 1, DedupeKey: "mid:c1@mail.example.com",
		MessageID: "c1@mail.example.com", Contact: jane, Subject: "Order 1234", ThreadSubject: "Order 1234",
		Posts: [][]byte{[]byte(`{"text":"x"}`)}, ArrivedAt: f.clk.Now(), Cc: []string{"bob@example.org", "carol@example.net"},
	}); err != nil {
		t.Fatal(err)
	}
	f.post(map[string]any{"email": jane, "text": "It ships today.", "operator_name": "Olga", "id": "op-1"})
	f.clk.Add(11 * time.Second)
	f.flush()
	msgs := f.relay.delivered()
	if len(msgs) != 1 || strings.Join(msgs[0].to, ",") != jane+",carol@example.net" {
		t.Fatalf("delivered %+v", msgs)
	}
	if it, _ := f.db.Outbox(ctx, 1); it.State != store.OutboxSent {
		t.Fatalf("reply not sent: %+v", it)
	}
	want := "[mailgate] Your reply could not be delivered to bob@example.org (CC): 550 5.1.1 no such user"
	if n := f.ul.notices(); len(n) != 1 || n[0].Email != jane || n[0].Text != want {
		t.Fatalf("notices = %+v, want %q", n, want)
	}
}

// loginNeeded is a token source whose grant waits for a login, as
// oauthgrant.Source's is after invalid_grant.
type loginNeeded struct{}

type loginNeededError struct{}

func (loginNeededError) Error() string {
	return "oauth2: channel \"support\": login needed (invalid_grant)"
}
func (loginNeededError) NeedsLogin() bool { return true }

func (loginNeeded) Token(context.Context) (string, error) { return "", loginNeededError{} }
func (loginNeeded) Reject(string)                         {}

// A reply whose channel waits for an OAuth2 login is tried again soon, not
// at the next long step of the schedule, and without a WARN line per
// attempt (the token source logged the one ERROR line).
func TestOutboundWaitsForLogin(t *testing.T) {
	f := newOutboundFixture(t)
	f.tokens = loginNeeded{}
	f.open()
	f.post(map[string]any{"email": "jane@example.com", "text": "hello", "id": "t-1"})
	for attempt := 1; attempt <= 3; attempt++ {
		f.clk.Add(31 * time.Second)
		f.flush()
		it, _ := f.db.Outbox(context.Background(), 1)
		if it.State != store.OutboxQueued || it.Attempts != attempt || !it.SendAfter.Equal(f.clk.Now().Add(loginWait)) ||
			!strings.Contains(it.LastError, "login needed") {
			t.Fatalf("attempt %d: %+v", attempt, it)
		}
	}
	if conns, _ := f.relay.counts(); conns != 0 {
		t.Errorf("%d connections to the relay without a token", conns)
	}
	if strings.Contains(f.logs.String(), "level=WARN") {
		t.Errorf("WARN lines while waiting for a login:\n%s", f.logs)
	}
}

// BenchmarkOutboxBurst flushes 200 queued replies to as many contacts to a
// relay that takes 3 ms per message (as a relay that fsyncs its queue
// does, without using the CPU) and then sends the same 200 emails again
// with a bare smtpout.Sender burst over one connection, then over
// BurstConnections at once; it reports the rates and the outbox's as
// ratios of the sender's ("ratio" over one connection, "ratio-same-conns"
// over as many as the outbox), the figures of the bench's "outbox /
// smtpout.Sender burst" rows without the disk of a real Postfix. Both
// sides send the same bytes; the outbox over BurstConnections connections
// (checked). The relay's delay runs in parallel on every connection, as
// a real relay's fsyncs do only in part.
//
//	go test ./outbound -run '^$' -bench OutboxBurst -benchtime 3x
func BenchmarkOutboxBurst(b *testing.B) {
	const n, delay = 200, 3 * time.Millisecond
	// The CPU time of the whole process (the relay included, which does
	// the same work for both sides) tells what each side takes from the
	// cores, which against a real relay on the same machine (Postfix in
	// make bench) it takes from the relay.
	// Voluntary context switches (a thread parked in the kernel, mostly
	// the futex of a goroutine hand-off between threads) count the same
	// way, and hardly depend on the other load on the machine.
	var outbox, raw, rawN, outboxCPU, rawCPU, rawNCPU time.Duration
	var outboxSw, rawSw, rawNSw int64
	for range b.N {
		b.StopTimer()
		f := newOutboundFixture(b)
		for i := range n {
			f.post(map[string]any{"email": fmt.Sprintf("c%d@example.com", i), "text": strings.Repeat("Thanks for waiting, we have looked at your order. ", 20)})
		}
		f.clk.Add(11 * time.Second)
		f.relay.setRcpt(func(int, string) error { time.Sleep(delay); return nil })
		b.StartTimer()
		start, cpu0, sw0 := time.Now(), processCPU(b), contextSwitches(b)
		f.flush()
		outbox += time.Since(start)
		outboxCPU += processCPU(b) - cpu0
		outboxSw += contextSwitches(b) - sw0
		b.StopTimer()
		msgs := f.relay.delivered()
		if len(msgs) != n {
			b.Fatalf("%d emails delivered, want %d", len(msgs), n)
		}
		if conns, _ := f.relay.counts(); conns != BurstConnections {
			b.Fatalf("the outbox used %d connections, want %d", conns, BurstConnections)
		}
		// Both sides send the same bytes: the relay received exactly what
		// the outbox rendered (go-smtp undoes the dot-stuffing), and the
		// bare sender sends that again.
		f.sent.mu.Lock()
		rendered := f.sent.msgs
		f.sent.mu.Unlock()
		if len(rendered) != n {
			b.Fatalf("%d emails copied to the Sent folder, want %d", len(rendered), n)
		}
		// The connections interleave at the relay: compare as sets.
		unsent := map[string]int{}
		for _, r := range rendered {
			unsent[string(r)]++
		}
		envs := make([]*smtpout.Envelope, len(msgs))
		for i, m := range msgs {
			if unsent[string(m.data)] == 0 {
				b.Fatalf("email %d: the relay received %d bytes that were not rendered, or twice", i, len(m.data))
			}
			unsent[string(m.data)]--
			envs[i] = &smtpout.Envelope{From: m.from, To: m.to, Data: m.data}
		}
		sender, err := smtpout.NewSender(smtpout.SenderOptions{Address: f.relay.addr, Security: smtpout.SecurityNone, HELO: "mailgate.test", Timeout: 10 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		start, cpu0, sw0 = time.Now(), processCPU(b), contextSwitches(b)
		for i, err := range sender.Send(context.Background(), envs) {
			if err != nil {
				b.Fatalf("raw send %d: %v", i, err)
			}
		}
		raw += time.Since(start)
		rawCPU += processCPU(b) - cpu0
		rawSw += contextSwitches(b) - sw0
		if conns, _ := f.relay.counts(); conns != BurstConnections+1 {
			b.Fatalf("the bare sender used %d connections, want 1", conns-BurstConnections)
		}
		// The bare sender over as many connections as the outbox, each
		// recipient on one (each email has its own here).
		split := make([][]*smtpout.Envelope, BurstConnections)
		for i, e := range envs {
			split[i%BurstConnections] = append(split[i%BurstConnections], e)
		}
		start, cpu0, sw0 = time.Now(), processCPU(b), contextSwitches(b)
		var wg sync.WaitGroup
		for _, part := range split {
			wg.Go(func() {
				for i, err := range sender.Send(context.Background(), part) {
					if err != nil {
						b.Errorf("raw send %d over %d connections: %v", i, BurstConnections, err)
					}
				}
			})
		}
		wg.Wait()
		rawN += time.Since(start)
		rawNCPU += processCPU(b) - cpu0
		rawNSw += contextSwitches(b) - sw0
	}
	b.ReportMetric(float64(n*b.N)/outbox.Seconds(), "outbox-replies/s")
	b.ReportMetric(float64(n*b.N)/raw.Seconds(), "sender-mails/s")
	b.ReportMetric(float64(n*b.N)/rawN.Seconds(), "sender-conns-mails/s")
	b.ReportMetric(raw.Seconds()/outbox.Seconds(), "ratio")
	b.ReportMetric(rawN.Seconds()/outbox.Seconds(), "ratio-same-conns")
	b.ReportMetric(float64(outboxCPU.Microseconds())/float64(n*b.N), "outbox-cpu-us/reply")
	b.ReportMetric(float64(rawCPU.Microseconds())/float64(n*b.N), "sender-cpu-us/mail")
	b.ReportMetric(float64(outboxSw)/float64(n*b.N), "outbox-ctxsw/reply")
	b.ReportMetric(float64(rawSw)/float64(n*b.N), "sender-ctxsw/mail")
	b.ReportMetric(float64(rawNCPU.Microseconds())/float64(n*b.N), "sender-conns-cpu-us/mail")
	b.ReportMetric(float64(rawNSw)/float64(n*b.N), "sender-conns-ctxsw/mail")
}

// contextSwitches is the number of voluntary context switches of the
// process so far.
func contextSwitches(tb testing.TB) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return ru.Nvcsw
}

// processCPU is the user and system CPU time the process used so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestWakeOnlyEarlier checks that a Wake reaches the worker unless its
// items are due no earlier than the worker's timer fires anyway.
func TestWakeOnlyEarlier(t *testing.T) {
	timer := time.Unix(1_700_000_060, 0)
	for _, c := range []struct {
		name   string
		nextAt time.Time // zero: the worker is reading the outbox
		due    time.Time
		woken  bool
	}{
		{"due before the timer", timer, timer.Add(-time.Second), true},
		{"due with the timer", timer, timer, false},
		{"due after the timer", timer, timer.Add(time.Minute), false},
		{"due now (cancelled, reload)", timer, time.Time{}, true},
		{"while the worker reads", time.Time{}, timer.Add(time.Minute), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := &Outbox{wake: make(chan struct{}, 1)}
			if !c.nextAt.IsZero() {
				o.nextAt.Store(c.nextAt.UnixNano())
			}
			o.Wake("support", c.due)
			if woken := len(o.wake) == 1; woken != c.woken {
				t.Errorf("woken = %v, want %v", woken, c.woken)
			}
		})
	}
}
