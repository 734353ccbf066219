package imapsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"mailgate/devmail"
)

const (
	testUser     = "alice"
	testPassword = "correct-horse-7"
	waitTimeout  = time.Minute // generous: go test runs packages side by side under -race
)

// fullCaps is a server with MOVE and UIDPLUS (IDLE is always offered).
var fullCaps = imap.CapSet{
	imap.CapIMAP4rev1: {},
	imap.CapUIDPlus:   {},
	imap.CapMove:      {},
}

// testServer is go-imap's in-memory server on a loopback port. The
// backend survives restarts, so mail appended while it is down is kept.
type testServer struct {
	t    testing.TB
	mem  *imapmemserver.Server
	user *imapmemserver.User
	caps imap.CapSet
	// wrap, when set, wraps each new session (for servers that behave
	// unlike imapmemserver).
	wrap func(imapserver.Session) imapserver.Session

	mu   sync.Mutex
	srv  *imapserver.Server
	addr string
}

func newTestServer(t testing.TB, caps imap.CapSet) *testServer {
	t.Helper()
	ts := &testServer{t: t, mem: imapmemserver.New(), caps: caps}
	ts.user = ts.addUser(testPassword)
	ts.listen("127.0.0.1:0")
	t.Cleanup(ts.stop)
	return ts
}

// addUser (re)creates the test user with password and an empty INBOX.
func (ts *testServer) addUser(password string) *imapmemserver.User {
	u := imapmemserver.NewUser(testUser, password)
	if err := u.Create("INBOX", nil); err != nil {
		ts.t.Fatalf("create INBOX: %v", err)
	}
	ts.mem.AddUser(u)
	return u
}

func (ts *testServer) listen(addr string) {
	ts.t.Helper()
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			sess := devmail.PollingIdle(ts.mem.NewSession())
			ts.mu.Lock()
			wrap := ts.wrap
			ts.mu.Unlock()
			if wrap != nil {
				sess = wrap(sess)
			}
			return sess, nil, nil
		},
		Caps:         ts.caps,
		InsecureAuth: true,
		Logger:       log.New(discardWriter{}, "", 0),
	})
	var ln net.Listener
	var err error
	deadline := time.Now().Add(waitTimeout)
	for {
		ln, err = net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the old listener's port may still be closing
	}
	if err != nil {
		ts.t.Fatalf("listen %s: %v", addr, err)
	}
	go srv.Serve(ln)
	ts.mu.Lock()
	ts.srv, ts.addr = srv, ln.Addr().String()
	ts.mu.Unlock()
}

// stop closes the listener and every connection.
func (ts *testServer) stop() {
	ts.mu.Lock()
	srv := ts.srv
	ts.mu.Unlock()
	srv.Close()
}

// restart starts a new server on the same address with the same backend.
func (ts *testServer) restart() { ts.listen(ts.address()) }

func (ts *testServer) address() string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.addr
}

// appendMsg stores raw in mailbox through the backend and returns its UID.
func (ts *testServer) appendMsg(mailbox, raw string, flags ...imap.Flag) uint32 {
	ts.t.Helper()
	data, err := ts.user.Append(mailbox, bytes.NewReader([]byte(raw)), &imap.AppendOptions{Flags: flags})
	if err != nil {
		ts.t.Fatalf("append to %s: %v", mailbox, err)
	}
	return uint32(data.UID)
}

// flags returns the flags of every message of mailbox by UID, read with a
// second client.
func (ts *testServer) flags(mailbox string) map[uint32][]imap.Flag {
	ts.t.Helper()
	c, err := imapclient.DialInsecure(ts.address(), nil)
	if err != nil {
		ts.t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if err := c.Login(testUser, testPassword).Wait(); err != nil {
		ts.t.Fatalf("login: %v", err)
	}
	if _, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		ts.t.Fatalf("examine %s: %v", mailbox, err)
	}
	bufs, err := c.Fetch(imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		ts.t.Fatalf("fetch flags of %s: %v", mailbox, err)
	}
	out := make(map[uint32][]imap.Flag)
	for _, b := range bufs {
		out[uint32(b.UID)] = b.Flags
	}
	return out
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// recorder is the test's Handler, CursorStore and ActionSource, in memory.
type recorder struct {
	mu         sync.Mutex
	cursors    map[string]Cursor
	starts     []Cursor // StartFolder calls
	handled    []*Message
	attempts   []uint32
	changes    [][3]uint32 // UIDValidityChanged: old, new and 0
	failUID    uint32
	failTimes  int
	pending    []Action
	done       map[int64]bool
	refused    []string // ActionsRefused reasons
	handleHook func(m *Message)
}

func newRecorder() *recorder {
	return &recorder{cursors: make(map[string]Cursor), done: make(map[int64]bool)}
}

func (r *recorder) Cursor(ctx context.Context, folder string) (Cursor, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cursors[folder], nil
}

func (r *recorder) StartFolder(ctx context.Context, folder string, c Cursor) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cursors[folder] = c
	r.starts = append(r.starts, c)
	return nil
}

func (r *recorder) Handle(ctx context.Context, m *Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts = append(r.attempts, m.UID)
	if m.UID == r.failUID && r.failTimes > 0 {
		r.failTimes--
		return errors.New("ledger busy")
	}
	r.handled = append(r.handled, m)
	if c := r.cursors[m.Folder]; c.UIDValidity != m.UIDValidity {
		r.cursors[m.Folder] = Cursor{UIDValidity: m.UIDValidity, UID: m.UID}
	} else if c.UID < m.UID {
		c.UID = m.UID
		r.cursors[m.Folder] = c
	}
	return nil
}

func (r *recorder) UIDValidityChanged(ctx context.Context, folder string, old, new uint32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, [3]uint32{old, new, 0})
	r.cursors[folder] = Cursor{UIDValidity: new}
	return nil
}

func (r *recorder) PendingActions(ctx context.Context, folder string, limit int) ([]Action, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Action
	for _, a := range r.pending {
		if !r.done[a.ID] && len(out) < limit {
			out = append(out, a)
		}
	}
	return out, nil
}

func (r *recorder) ActionsDone(ctx context.Context, ids []int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		r.done[id] = true
	}
	return nil
}

func (r *recorder) ActionsRefused(ctx context.Context, ids []int64, reason string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		r.done[id] = true
	}
	r.refused = append(r.refused, reason)
	return nil
}

func (r *recorder) addActions(acts ...Action) {
	r.mu.Lock()
	r.pending = append(r.pending, acts...)
	r.mu.Unlock()
}

func (r *recorder) doneCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.done)
}

func (r *recorder) handledCopy() []*Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.handled)
}

func (r *recorder) attemptsCopy() []uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.attempts)
}

func (r *recorder) changesCopy() [][3]uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.changes)
}

// lockedBuffer is a bytes.Buffer safe for the concurrent writes of slog.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// baseOptions are fast-retrying options for ts and r.
func baseOptions(ts *testServer, r *recorder) Options {
	return Options{
		Channel:      "support",
		Address:      ts.address(),
		Security:     SecurityNone,
		Auth:         PasswordAuth{Username: testUser, Password: testPassword},
		Folders:      []string{"INBOX"},
		PollInterval: time.Hour,
		IdleRefresh:  time.Hour,
		MinBackoff:   10 * time.Millisecond,
		MaxBackoff:   100 * time.Millisecond,
		Start:        Start{All: true}, // most tests hand a backlog
		Cursors:      r,
		Handler:      r,
		Actions:      r,
	}
}

// startWatcher runs a Watcher until the test ends.
func startWatcher(t *testing.T, opts Options) *Watcher {
	t.Helper()
	w, err := NewWatcher(opts)
	if err != nil {
		t.Fatalf("NewWatcher: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return after cancel")
		}
	})
	return w
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitHandled(t *testing.T, r *recorder, n int) []*Message {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d handled messages", n), func() bool { return len(r.handledCopy()) >= n })
	return r.handledCopy()
}

// testMail is a small message, different for each n.
func testMail(n int) string {
	return fmt.Sprintf("From: Customer %d <customer%d@example.test>\r\n"+
		"To: support@example.test\r\n"+
		"Subject: Order %d does not arrive\r\n"+
		"Message-ID: <order-%d@example.test>\r\n"+
		"Date: Mon, 03 Mar 2025 10:%02d:00 +0100\r\n"+
		"Content-Type: text/plain; charset=utf-8\r\n"+
		"\r\n"+
		"Hello, my order %d has not arrived yet. Regards\r\n", n, n, n, n, n%60, n)
}

func hasFlag(flags []imap.Flag, f imap.Flag) bool {
	return slices.ContainsFunc(flags, func(x imap.Flag) bool { return strings.EqualFold(string(x), string(f)) })
}

func uidsOf(msgs []*Message) []uint32 {
	out := make([]uint32, len(msgs))
	for i, m := range msgs {
		out[i] = m.UID
	}
	return out
}

// (a) and (c): mail present at start is fetched in UID order, bodies with
// BODY.PEEK (it stays unseen), and mail already \Seen is fetched too.
func TestExistingMailFetchedUnseenInOrder(t *testing.T) {
	ts := newTestServer(t, fullCaps)
	r := newRecorder()
	ts.appendMsg("INBOX", testMail(1))
	ts.appendMsg("INBOX", testMail(2), imap.FlagSeen)
	ts.appendMsg("INBOX", testMail(3))

	w := startWatcher(t, baseOptions(ts, r))
	got := waitHandled(t, r, 3)

	if want := []uint32{1, 2, 3}; !slices.Equal(uidsOf(got), want) {
		t.Fatalf("handled UIDs %v, want %v", uidsOf(got), want)
	}
	for i, m := range got {
		if string(m.Raw) != testMail(i+1) {
			t.Errorf("UID %d: Raw = %q, want %q", m.UID, m.Raw, testMail(i+1))
		}
		if m.Folder != "INBOX" || m.UIDValidity == 0 || m.TooLarge {
			t.Errorf("UID %d: Folder %q UIDValidity %d TooLarge %v", m.UID, m.Folder, m.UIDValidity, m.TooLarge)
		}
		if m.Size != int64(len(testMail(i+1))) {
			t.Errorf("UID %d: Size %d, want %d", m.UID, m.Size, len(testMail(i+1)))
		}
		if m.InternalDate.IsZero() {
			t.Errorf("UID %d: zero InternalDate", m.UID)
		}
	}
	if !hasFlag(got[1].Flags, imap.FlagSeen) {
		t.Errorf("UID 2 flags %v, want \\Seen", got[1].Flags)
	}
	flags := ts.flags("INBOX")
	for _, uid := range []uint32{1, 3} {
		if hasFlag(flags[uid], imap.FlagSeen) {
			t.Errorf("UID %d became \\Seen on the server: %v", uid, flags[uid])
		}
	}
	waitFor(t, "state connected and synced", func() bool {
		s := w.State()
		return s.Connected && s.Attempted && !s.LastSync.IsZero() && s.LastError == ""
	})
}

// (b): mail appended while the watcher idles is handled, with polling
// effectively disabled.
func TestIdleDelivery(t *testing.T) {
	ts := newTestServer(t, fullCaps)
	r := newRecorder()
	w := startWatcher(t, baseOptions(ts, r))
	waitFor(t, "first sync", func() bool { return !w.State().LastSync.IsZero() })

	for i := 1; i <= 3; i++ {
		ts.appendMsg("INBOX", testMail(i))
		got := waitHandled(t, r, i)
		if got[i-1].UID != uint32(i) || string(got[i-1].Raw) != testMail(i) {
			t.Fatalf("message %d handled as UID %d %q", i, got[i-1].UID, got[i-1].Raw)
		}
	}
}

// (d): a burst of 500 messages is handled exactly once each, in order.
func TestBurstExactlyOnceInOrder(t *testing.T) {
	ts := newTestServer(t, fullCaps)
	r := newRecorder()
	w := startWatcher(t, baseOptions(ts, r))
	waitFor(t, "first sync", func() bool { return !w.State().LastSync.IsZero() })

	const n = 500
	for i := 1; i <= n; i++ {
		ts.appendMsg("INBOX", testMail(i))
	}
	waitHandled(t, r, n)
	// A sentinel: had any UID been handed twice, the duplicate would show
	// up before it in the strictly ordered Handle calls.
	ts.appendMsg("INBOX", testMail(n+1))
	waitHandled(t, r, n+1)
	attempts := r.attemptsCopy()
	if len(attempts) != n+1 {
		t.Fatalf("%d Handle calls, want %d", len(attempts), n+1)
	}
	for i, uid := range attempts {
		if uid != uint32(i+1) {
			t.Fatalf("Handle call %d got UID %d, want %d", i, uid, i+1)
		}
	}
}

// (e): the server drops every connection mid-IDLE and comes back on the
// same address; mail appended during the outage is caught up.
func TestReconnectAfterServerDrop(t *testing.T) {
	ts := newTestServer(t, fullCaps)
	r := newRecorder()
	w := startWatcher(t, baseOptions(ts, r))
	ts.appendMsg("INBOX", testMail(1))
	waitHandled(t, r, 1)
	waitFor(t, "connected", func() bool { return w.State().Connected })

	ts.stop()
	waitFor(t, "disconnected", func() bool { return !w.State().Connected })
	ts.appendMsg("INBOX", testMail(2))
	ts.appendMsg("INBOX", testMail(3))
	waitFor(t, "a failed reconnect", func() bool { return w.State().LastError != "" })
	ts.restart()

	got := waitHandled(t, r, 3)
	if want := []uint32{1, 2, 3}; !slices.Equal(uidsOf(got), want) {
		t.Fatalf("handled UIDs %v, want %v", uidsOf(got), want)
	}
	waitFor(t, "connected again", func() bool { s := w.State(); return s.Connected && s.LastError == "" })
	ts.appendMsg("INBOX", testMail(4))
	got = waitHandled(t, r, 4)
	if got[3].UID != 4 {
		t.Fatalf("after reconnect, handled UID %d, want 4", got[3].UID)
	}
}

// (f): the folder is recreated with a new UIDVALIDITY; the handler is told
// and the folder is rescanned from UID 1.
func TestUIDValidityChange(t *testing.T) {
	ts := newTestServer(t, fullCaps)
	r := newRecorder()
	opts := baseOptions(ts, r)
	opts.PollInterval = 50 * time.Millisecond
	startWatcher(t, opts)
	ts.appendMsg("INBOX", testMail(1))
	ts.appendMsg("INBOX", testMail(2))
	before := waitHandled(t, r, 2)
	oldValidity := before[0].UIDValidity

	if err := ts.user.Delete("INBOX"); err != nil {
		t.Fatal(err)
	}
	if err := ts.user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		ts.appendMsg("INBOX", testMail(i))
	}
	got := waitHandled(t, r, 5)[2:]
	newValidity := got[0].UIDValidity
	if newValidity == oldValidity {
		t.Fatalf("UIDVALIDITY unchanged (%d)", newValidity)
	}
	if want := []uint32{1, 2, 3}; !slices.Equal(uidsOf(got), want) {
		t.Fatalf("rescanned UIDs %v, want %v", uidsOf(got), want)
	}
	for _, m := range got {
		if m.UIDValidity != newValidity {
			t.Errorf("UID %d handed with UIDVALIDITY %d, want %d", m.UID, m.UIDValidity, newValidity)
		}
	}
	changes := r.changesCopy()
	if want := [][3]uint32{{oldValidity, newValidity, 0}}; !slices.Equal(changes, want) {
		t.Fatalf("UIDValidityChanged calls %v, want %v", changes, want)
	}
}

// (g): seen, flag, move (destination created) and delete reach the right
// UIDs, with and without MOVE/UIDPLUS; stale and unknown actions are
// dropped.
func TestActions(t *testing.T) {
	tests := []struct {
		name string
		caps imap.CapSet
	}{
		{"move and uidplus", fullCaps},
		{"copy store expunge", imap.CapSet{imap.CapIMAP4rev1: {}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t, tt.caps)
			r := newRecorder()
			for i := 1; i <= 6; i++ {
				ts.appendMsg("INBOX", testMail(i))
			}
			opts := baseOptions(ts, r)
			opts.QuarantineFolder = "Quarantine"
			w := startWatcher(t, opts)
			got := waitHandled(t, r, 6)
			v := got[0].UIDValidity

			r.addActions(
				Action{ID: 1, UIDValidity: v, UID: 1, Kind: ActionSeen},
				Action{ID: 2, UIDValidity: v, UID: 2, Kind: ActionFlag},
				Action{ID: 3, UIDValidity: v, UID: 3, Kind: ActionMove, Dest: "Archive/Handled"},
				Action{ID: 4, UIDValidity: v, UID: 4, Kind: ActionDelete},
				Action{ID: 5, UIDValidity: v + 100, UID: 5, Kind: ActionDelete},
				Action{ID: 6, UIDValidity: v, UID: 5, Kind: "bogus"},
				Action{ID: 7, UIDValidity: v, UID: 6, Kind: ActionQuarantine},
				Action{ID: 8, UIDValidity: v, UID: 1, Kind: ActionFlag},
			)
			w.Notify()
			waitFor(t, "all actions done", func() bool { return r.doneCount() == 8 })

			inbox := ts.flags("INBOX")
			if len(inbox) != 3 {
				t.Fatalf("INBOX holds UIDs %v, want 1, 2 and 5", inbox)
			}
			check := func(uid uint32, want, notWant []imap.Flag) {
				t.Helper()
				flags, ok := inbox[uid]
				if !ok {
					t.Errorf("UID %d missing from INBOX", uid)
				}
				for _, f := range want {
					if !hasFlag(flags, f) {
						t.Errorf("UID %d flags %v lack %s", uid, flags, f)
					}
				}
				for _, f := range notWant {
					if hasFlag(flags, f) {
						t.Errorf("UID %d flags %v have %s", uid, flags, f)
					}
				}
			}
			check(1, []imap.Flag{imap.FlagSeen, imap.FlagFlagged}, []imap.Flag{imap.FlagDeleted})
			check(2, []imap.Flag{imap.FlagFlagged}, []imap.Flag{imap.FlagSeen, imap.FlagDeleted})
			check(5, nil, []imap.Flag{imap.FlagSeen, imap.FlagFlagged, imap.FlagDeleted})

			if archived := ts.flags("Archive/Handled"); len(archived) != 1 {
				t.Errorf("Archive/Handled holds %d messages, want 1", len(archived))
			}
			if quarantined := ts.flags("Quarantine"); len(quarantined) != 1 {
				t.Errorf("Quarantine holds %d messages, want 1", len(quarantined))
			}
		})
	}
}

// (h): a message over MaxMessageSize is handed as TooLarge, without body,
// and the messages around it normally.
func TestTooLargeMessage(t *testing.T) {
	ts := newTestServer(t, fullCaps)
	r := newRecorder()
	big := testMail(2) + strings.Repeat("A long attachment line.\r\n", 200)
	ts.appendMsg("INBOX", testMail(1))
	ts.appendMsg("INBOX", big)
	ts.appendMsg("INBOX", testMail(3))
	opts := baseOptions(ts, r)
	opts.MaxMessageSize = 2000
	startWatcher(t, opts)

	got := waitHandled(t, r, 3)
	if !got[1].TooLarge || got[1].Raw != nil || got[1].Size != int64(len(big)) || got[1].UID != 2 {
		t.Errorf("big message: UID %d TooLarge %v Raw len %d Size %d, want UID 2, TooLarge, no Raw, Size %d",
			got[1].UID, got[1].TooLarge, len(got[1].Raw), got[1].Size, len(big))
	}
	for _, i := range []int{0, 2} {
		if got[i].TooLarge || string(got[i].Raw) != testMail(i+1) {
			t.Errorf("UID %d: TooLarge %v Raw %q", got[i].UID, got[i].TooLarge, got[i].Raw)
		}
	}
}

// (i): a Handler error for one UID makes the watcher hand the same UID
// again later, never a later one first.
func TestHandlerErrorRetriesSameUID(t *testing.T) {
	ts := newTestServer(t, fullCaps)
	r := newRecorder()
	r.failUID, r.failTimes = 2, 2
	for i := 1; i <= 3; i++ {
		ts.appendMsg("INBOX", testMail(i))
	}
	w := startWatcher(t, baseOptions(ts, r))

	got := waitHandled(t, r, 3)
	if want := []uint32{1, 2, 3}; !slices.Equal(uidsOf(got), want) {
		t.Fatalf("handled UIDs %v, want %v", uidsOf(got), want)
	}
	if want := []uint32{1, 2, 2, 2, 3}; !slices.Equal(r.attemptsCopy(), want) {
		t.Fatalf("Handle calls %v, want %v", r.attemptsCopy(), want)
	}
	if !w.State().Connected {
		t.Errorf("handler errors must not drop the connection")
	}
}

// (j): a rejected password sets AuthFailed and logs one ERROR line over
// many retries, and one INFO line when the login works again.
func TestWrongPasswordLogsOnce(t *testing.T) {
	ts := newTestServer(t, fullCaps)
	r := newRecorder()
	var logs lockedBuffer
	var dials atomic.Int32
	opts := baseOptions(ts, r)
	const badPassword = "not-the-password-42"
	opts.Auth = PasswordAuth{Username: testUser, Password: badPassword}
	opts.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.MaxBackoff = 20 * time.Millisecond
	opts.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	w := startWatcher(t, opts)

	waitFor(t, "several failed logins", func() bool { return w.State().AuthFailed && dials.Load() >= 5 })
	s := w.State()
	if !s.Attempted || s.Connected || s.LastError == "" {
		t.Errorf("state %+v, want attempted, not connected, with an error", s)
	}
	countLines := func(substr string) int { return strings.Count(logs.String(), substr) }
	if n := countLines("level=ERROR"); n != 1 {
		t.Fatalf("%d ERROR lines, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `imap: channel \"support\": login as \"alice\" failed: Authentication failed`) {
		t.Errorf("ERROR line does not name channel, user and server text:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), badPassword) || strings.Contains(s.LastError, badPassword) {
		t.Fatalf("password leaked into logs or state")
	}

	// The operator fixes the password on the server side.
	ts.addUser(badPassword)
	waitFor(t, "login works again", func() bool { s := w.State(); return !s.AuthFailed && s.Connected })
	if n := countLines("level=ERROR"); n != 1 {
		t.Errorf("%d ERROR lines after recovery, want 1", n)
	}
	if n := countLines("succeeded again"); n != 1 {
		t.Errorf("%d recovery lines, want 1:\n%s", n, logs.String())
	}
}

// Several folders are watched at once, each on its own connection.
func TestSeveralFolders(t *testing.T) {
	ts := newTestServer(t, fullCaps)
	if err := ts.user.Create("Support", nil); err != nil {
		t.Fatal(err)
	}
	r := newRecorder()
	opts := baseOptions(ts, r)
	opts.Folders = []string{"INBOX", "Support"}
	w := startWatcher(t, opts)
	waitFor(t, "both folders synced", func() bool { s := w.State(); return s.Connected && !s.LastSync.IsZero() })

	ts.appendMsg("Support", testMail(1))
	ts.appendMsg("INBOX", testMail(2))
	got := waitHandled(t, r, 2)
	folders := map[string]string{}
	for _, m := range got {
		folders[m.Folder] = string(m.Raw)
	}
	if folders["Support"] != testMail(1) || folders["INBOX"] != testMail(2) {
		t.Fatalf("handled %v", folders)
	}
}

// Cancelling the context stops Run promptly with nil, even mid-IDLE.
func TestRunStopsOnCancel(t *testing.T) {
	ts := newTestServer(t, fullCaps)
	r := newRecorder()
	w, err := NewWatcher(baseOptions(ts, r))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	waitFor(t, "synced", func() bool { return !w.State().LastSync.IsZero() })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return")
	}
	if w.State().Connected {
		t.Errorf("still connected after Run returned")
	}
}

// preparer is a recorder that is also a Preparer.
type preparer struct {
	*recorder
	mu       sync.Mutex
	prepared map[uint32]int // Prepare calls per UID
	inFlight int
	maxIn    int
	// together, when set, holds each Prepare until two run at once (or a
	// second passed), to show that they run concurrently.
	together chan struct{}
}

func (p *preparer) Prepare(ctx context.Context, m *Message) {
	p.mu.Lock()
	p.prepared[m.UID]++
	p.inFlight++
	p.maxIn = max(p.maxIn, p.inFlight)
	both := p.inFlight >= 2
	p.mu.Unlock()
	if p.together != nil {
		if both {
			select {
			case p.together <- struct{}{}:
			default:
			}
		}
		select {
		case <-p.together:
		case <-time.After(time.Second):
		}
	}
	m.Prepared = fmt.Sprintf("prepared %d", m.UID)
	p.mu.Lock()
	p.inFlight--
	p.mu.Unlock()
}

func (p *preparer) Handle(ctx context.Context, m *Message) error {
	if want := fmt.Sprintf("prepared %d", m.UID); m.Prepared != want {
		return fmt.Errorf("uid %d handed with Prepared %v, want %q", m.UID, m.Prepared, want)
	}
	return p.recorder.Handle(ctx, m)
}

// A Preparer's Prepare runs concurrently and ahead of Handle, which still
// sees every message once, prepared, in UID order, over several batches;
// a message whose Handle failed is prepared again.
func TestPreparerPipeline(t *testing.T) {
	ts := newTestServer(t, fullCaps)
	r := newRecorder()
	r.failUID, r.failTimes = 7, 1
	p := &preparer{recorder: r, prepared: make(map[uint32]int), together: make(chan struct{})}
	const n = 23
	for i := 1; i <= n; i++ {
		ts.appendMsg("INBOX", testMail(i))
	}
	opts := baseOptions(ts, r)
	opts.Handler, opts.Preparer = p, p
	opts.BatchSize = 4
	opts.PrepareWorkers = 2
	startWatcher(t, opts)

	got := waitHandled(t, r, n)
	want := make([]uint32, n)
	for i := range want {
		want[i] = uint32(i + 1)
	}
	if !slices.Equal(uidsOf(got), want) {
		t.Fatalf("handled UIDs %v, want %v", uidsOf(got), want)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.maxIn < 2 {
		t.Errorf("at most %d Prepare ran at once, want 2", p.maxIn)
	}
	if p.prepared[7] < 2 {
		t.Errorf("uid 7 prepared %d times, want it prepared again after its Handle failed", p.prepared[7])
	}
	for uid := uint32(1); uid < 7; uid++ {
		if p.prepared[uid] != 1 {
			t.Errorf("uid %d prepared %d times, want 1", uid, p.prepared[uid])
		}
	}
}

// gate is a Handler that holds Handle of the first message until opened,
// counting what was fed to the pipeline meanwhile through Prepare.
type gate struct {
	*recorder
	open     chan struct{}
	mu       sync.Mutex
	prepared int
}

func (g *gate) Prepare(ctx context.Context, m *Message) {
	g.mu.Lock()
	g.prepared++
	g.mu.Unlock()
}

func (g *gate) preparedCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.prepared
}

func (g *gate) Handle(ctx context.Context, m *Message) error {
	<-g.open
	return g.recorder.Handle(ctx, m)
}

// While Handle is stuck, the Watcher fetches ahead only as far as the
// queued-bytes budget allows, and goes on once Handle does.
func TestPipelineBytesBudget(t *testing.T) {
	ts := newTestServer(t, fullCaps)
	r := newRecorder()
	g := &gate{recorder: r, open: make(chan struct{})}
	body := strings.Repeat("x", 10_000)
	const n = 20
	for i := 1; i <= n; i++ {
		ts.appendMsg("INBOX", testMail(i)+body+"\r\n")
	}
	opts := baseOptions(ts, r)
	opts.Handler, opts.Preparer = g, g
	w, err := NewWatcher(opts)
	if err != nil {
		t.Fatal(err)
	}
	w.maxQueuedBytes = 25_000 // two of these messages, not three
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	waitFor(t, "two messages queued", func() bool { return g.preparedCount() >= 2 })
	// Give the fetching side time to run past the budget, if it would.
	time.Sleep(300 * time.Millisecond)
	if got := g.preparedCount(); got != 2 {
		t.Errorf("%d messages queued while Handle was stuck, want 2 (the budget)", got)
	}
	close(g.open)
	if got := waitHandled(t, r, n); !slices.Equal(uidsOf(got)[:3], []uint32{1, 2, 3}) {
		t.Errorf("handled UIDs %v, want 1..%d in order", uidsOf(got), n)
	}
}

// refetcher is a recorder that is also a RefetchSource: a UID asked for
// is asked for until it is handled again or reported gone.
type refetcher struct {
	*recorder
	want []uint32
	gone []uint32
	why  []string
}

func (r *refetcher) ask(uids ...uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.want = append(r.want, uids...)
}

func (r *refetcher) Refetches(ctx context.Context, folder string, uidValidity uint32) ([]uint32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.want), nil
}

func (r *refetcher) RefetchFailed(ctx context.Context, folder string, uidValidity uint32, uids []uint32, why string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gone = append(r.gone, uids...)
	r.why = append(r.why, why)
	r.want = slices.DeleteFunc(r.want, func(u uint32) bool { return slices.Contains(uids, u) })
	return nil
}

func (r *refetcher) Handle(ctx context.Context, m *Message) error {
	if err := r.recorder.Handle(ctx, m); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.want = slices.DeleteFunc(r.want, func(u uint32) bool { return u == m.UID })
	return nil
}

func (r *refetcher) goneCopy() []uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.gone)
}

// startRefetcher runs a Watcher whose store is a refetcher, on a folder of
// n messages, and waits until they were handled.
func startRefetcher(t *testing.T, n int) (*testServer, *refetcher, *Watcher) {
	t.Helper()
	ts := newTestServer(t, fullCaps)
	r := &refetcher{recorder: newRecorder()}
	for i := 1; i <= n; i++ {
		ts.appendMsg("INBOX", testMail(i))
	}
	opts := baseOptions(ts, r.recorder)
	opts.Cursors, opts.Handler, opts.Refetches = r, r, r
	w := startWatcher(t, opts)
	waitHandled(t, r.recorder, n)
	return ts, r, w
}

// A message below the cursor that the RefetchSource asks for is fetched
// and handed again, without moving the cursor back; one the folder no
// longer holds is reported gone.
func TestRefetch(t *testing.T) {
	ts, r, w := startRefetcher(t, 4)
	r.addActions(Action{ID: 1, UIDValidity: 1, UID: 3, Kind: ActionDelete})
	w.Notify()
	waitFor(t, "uid 3 deleted", func() bool { return r.doneCount() == 1 })

	r.ask(2, 3)
	w.Notify()
	waitFor(t, "uid 3 reported gone", func() bool { return len(r.goneCopy()) > 0 })
	got := waitHandled(t, r.recorder, 5)
	if !slices.Equal(uidsOf(got), []uint32{1, 2, 3, 4, 2}) {
		t.Fatalf("handled UIDs %v, want [1 2 3 4 2]", uidsOf(got))
	}
	if !slices.Equal(r.goneCopy(), []uint32{3}) {
		t.Errorf("gone = %v, want [3]", r.goneCopy())
	}
	if !strings.Contains(string(got[4].Raw), "Subject: Order 2 does") {
		t.Errorf("refetched message:\n%s", got[4].Raw)
	}

	// New mail still continues after the highest UID handled.
	ts.appendMsg("INBOX", testMail(5))
	w.Notify()
	waitHandled(t, r.recorder, 6)
	time.Sleep(100 * time.Millisecond)
	if got = r.handledCopy(); !slices.Equal(uidsOf(got), []uint32{1, 2, 3, 4, 2, 5}) {
		t.Fatalf("handled UIDs %v, want [1 2 3 4 2 5]", uidsOf(got))
	}
}

// A refetch that keeps failing is given up after 3 tries, and new mail
// still gets through.
func TestRefetchGivesUp(t *testing.T) {
	ts, r, w := startRefetcher(t, 3)

	r.mu.Lock()
	r.failUID, r.failTimes = 2, 1000
	r.mu.Unlock()
	r.ask(2)
	ts.appendMsg("INBOX", testMail(4))
	w.Notify()
	waitFor(t, "uid 2 given up", func() bool { return len(r.goneCopy()) > 0 })
	got := r.handledCopy()
	if !slices.Equal(uidsOf(got), []uint32{1, 2, 3, 4}) {
		t.Fatalf("handled UIDs %v, want [1 2 3 4]", uidsOf(got))
	}
	later := r.attemptsCopy()[3:]
	tries := 0
	for _, u := range later {
		if u == 2 {
			tries++
		}
	}
	r.mu.Lock()
	why := strings.Join(r.why, "; ")
	r.mu.Unlock()
	if tries != maxRefetchTries || !strings.Contains(why, "3 tries") {
		t.Errorf("uid 2 tried %d times again, given up with %q; want %d tries", tries, why, maxRefetchTries)
	}
}

// TestStartPoint: a folder without a cursor starts where Options.Start
// says. "now" hands only mail that arrives afterwards; Since hands the mail
// whose INTERNALDATE is within it, and an older message above the first
// one in the window is handed as History, without its body.
func TestStartPoint(t *testing.T) {
	now := time.Now()
	old, recent := now.AddDate(0, 0, -30), now.AddDate(0, 0, -2)
	appendAt := func(ts *testServer, n int, at time.Time) {
		t.Helper()
		if _, err := ts.user.Append("INBOX", bytes.NewReader([]byte(testMail(n))), &imap.AppendOptions{Time: at}); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("now", func(t *testing.T) {
		ts := newTestServer(t, fullCaps)
		r := newRecorder()
		for i := 1; i <= 3; i++ {
			appendAt(ts, i, old)
		}
		opts := baseOptions(ts, r)
		opts.Start = Start{}
		opts.PollInterval = 50 * time.Millisecond
		startWatcher(t, opts)
		waitFor(t, "the start point", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.starts) == 1 })
		ts.appendMsg("INBOX", testMail(4))
		ts.appendMsg("INBOX", testMail(5))
		got := waitHandled(t, r, 2)
		if want := []uint32{4, 5}; !slices.Equal(uidsOf(got), want) {
			t.Fatalf("handed UIDs %v, want %v", uidsOf(got), want)
		}
		r.mu.Lock()
		start := r.starts[0]
		r.mu.Unlock()
		if start.UID != 3 || start.History != 3 || start.HistoryBelow != 0 {
			t.Errorf("start = %+v, want after UID 3 with 3 history messages", start)
		}
	})
	t.Run("since", func(t *testing.T) {
		ts := newTestServer(t, fullCaps)
		r := newRecorder()
		appendAt(ts, 1, old)
		appendAt(ts, 2, old)
		appendAt(ts, 3, recent)
		appendAt(ts, 4, old) // moved in later: an old message above the window's first
		appendAt(ts, 5, recent)
		opts := baseOptions(ts, r)
		opts.Start = Start{Since: 7 * 24 * time.Hour}
		startWatcher(t, opts)
		got := waitHandled(t, r, 3)
		if want := []uint32{3, 4, 5}; !slices.Equal(uidsOf(got), want) {
			t.Fatalf("handed UIDs %v, want %v", uidsOf(got), want)
		}
		for _, m := range got {
			if wantHistory := m.UID == 4; m.History != wantHistory || (m.Raw == nil) != wantHistory {
				t.Errorf("UID %d: History %v, body %d bytes; want history %v", m.UID, m.History, len(m.Raw), wantHistory)
			}
		}
		r.mu.Lock()
		start := r.starts[0]
		r.mu.Unlock()
		if start.UID != 2 || start.HistoryBelow != 6 || start.History != 3 {
			t.Errorf("start = %+v, want after UID 2, history below 6, 3 history messages", start)
		}
	})
}

// batcher is a preparer that is also a BatchHandler: it records a batch
// message by message with the recorder, stopping at the first failure.
// Prepare of the first UID waits until release UIDs were handed to
// Prepare, so that they are all queued behind it when it is handled.
type batcher struct {
	*preparer
	release uint32
	queued  chan struct{}
	once    sync.Once
	bmu     sync.Mutex
	batches [][]uint32
}

func (b *batcher) Prepare(ctx context.Context, m *Message) {
	switch m.UID {
	case 1:
		select {
		case <-b.queued:
		case <-ctx.Done():
		}
	case b.release:
		b.once.Do(func() { close(b.queued) })
	}
	b.preparer.Prepare(ctx, m)
}

func (b *batcher) HandleBatch(ctx context.Context, msgs []*Message) (int, error) {
	b.bmu.Lock()
	b.batches = append(b.batches, uidsOf(msgs))
	b.bmu.Unlock()
	for i, m := range msgs {
		if err := b.preparer.Handle(ctx, m); err != nil {
			return i, err
		}
	}
	return len(msgs), nil
}

// Handle is how the watcher hands a message that no other waits behind
// (such as a failed message fetched again before the next ones are): a
// batch of one.
func (b *batcher) Handle(ctx context.Context, m *Message) error {
	b.bmu.Lock()
	b.batches = append(b.batches, []uint32{m.UID})
	b.bmu.Unlock()
	return b.preparer.Handle(ctx, m)
}

func (b *batcher) batchesCopy() [][]uint32 {
	b.bmu.Lock()
	defer b.bmu.Unlock()
	return slices.Clone(b.batches)
}

// A BatchHandler gets the prepared messages queued behind the first one
// in one call, in UID order; when it records only part of a batch, the
// failed message is handed again before any later one, prepared again, and
// the messages it recorded are not handed again.
func TestBatchHandler(t *testing.T) {
	ts := newTestServer(t, fullCaps)
	r := newRecorder()
	r.failUID, r.failTimes = 7, 1
	const n, batchSize = 25, 10
	for i := 1; i <= n; i++ {
		ts.appendMsg("INBOX", testMail(i))
	}
	p := &preparer{recorder: r, prepared: make(map[uint32]int)}
	b := &batcher{preparer: p, release: batchSize, queued: make(chan struct{})}
	opts := baseOptions(ts, r)
	opts.Handler, opts.Preparer = b, b
	opts.BatchSize = batchSize
	opts.PrepareWorkers = 2
	startWatcher(t, opts)

	got := waitHandled(t, r, n)
	want := make([]uint32, n)
	for i := range want {
		want[i] = uint32(i + 1)
	}
	if !slices.Equal(uidsOf(got), want) {
		t.Fatalf("recorded UIDs %v, want %v", uidsOf(got), want)
	}
	attempts := append(append(append([]uint32(nil), want[:7]...), 7), want[7:]...)
	if !slices.Equal(r.attemptsCopy(), attempts) {
		t.Fatalf("messages tried %v, want %v", r.attemptsCopy(), attempts)
	}
	batches := b.batchesCopy()
	if len(batches) == 0 || !slices.Equal(batches[0], want[:batchSize]) {
		t.Fatalf("batches %v, want the first to be UIDs 1-%d (all queued behind UID 1)", batches, batchSize)
	}
	var flat []uint32
	for _, bt := range batches {
		flat = append(flat, bt...)
	}
	// The batch that failed at UID 7 handed 8-10 too: 7-10 come again,
	// and nothing else does, 7 alone or in a batch depending on whether
	// 8 was queued when it came again.
	if len(flat) != n+4 {
		t.Errorf("%d messages handed in %d batches %v, want %d", len(flat), len(batches), batches, n+4)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.prepared[7] < 2 {
		t.Errorf("uid 7 prepared %d times, want it prepared again after its batch failed", p.prepared[7])
	}
	for uid := uint32(1); uid < 7; uid++ {
		if p.prepared[uid] != 1 {
			t.Errorf("uid %d prepared %d times, want 1", uid, p.prepared[uid])
		}
	}
}
