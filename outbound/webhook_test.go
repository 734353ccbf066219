package outbound

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mailgate/internal/syncbuf"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/store"
)

const testOutboundToken = "s3cret-outbound-token"

// openOutboxStore opens a fresh store in t's temporary directory.
func openOutboxStore(t testing.TB, now func() time.Time) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "mailgate.db"), store.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// webhookFixture is a Webhook for channels "support" (debug on) and
// "notoken" (no token configured) on a real store.
type webhookFixture struct {
	db    *store.DB
	h     *Webhook
	logs  *syncbuf.Buffer
	mu    sync.Mutex
	woken []string
}

func newWebhookFixture(t testing.TB) *webhookFixture {
	f := &webhookFixture{db: openOutboxStore(t, nil), logs: &syncbuf.Buffer{}}
	channels := map[string]WebhookChannel{
		"support": {Name: "support", OutboundToken: testOutboundToken, Debug: true, Coalesce: 10 * time.Second},
		"notoken": {Name: "notoken"},
	}
	f.h = NewWebhook(WebhookOptions{
		Channels: func(name string) (WebhookChannel, bool) { c, ok := channels[name]; return c, ok },
		DB:       f.db,
		Wake: func(ch string, _ time.Time) {
			f.mu.Lock()
			f.woken = append(f.woken, ch)
			f.mu.Unlock()
		},
		Logger: slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    func() time.Time { return time.Unix(1_700_000_000, 0) },
	})
	return f
}

// do sends one request to the handler and returns the status and the
// decoded JSON body.
func (f *webhookFixture) do(t testing.TB, method, path, token string, body io.Reader) (*http.Response, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, path, body)
	if token != "" {
		req.Header.Set("API-SECURITY-TOKEN", token)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	resp := rec.Result()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("%s %s: response body is not JSON: %v", method, path, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return resp, m
}

func TestWebhookStatuses(t *testing.T) {
	f := newWebhookFixture(t)
	msg := `{"email":"Jane@Example.com","text":"Hello Jane","operator_name":"Olga","id":"m-1"}`
	big := `{"email":"jane@example.com","text":"` + strings.Repeat("a", MaxWebhookBody) + `"}`
	for _, c := range []struct {
		name, method, path, token, body string
		status                          int
		want                            map[string]any
	}{
		{"unknown channel", "POST", "/userlike/nope", testOutboundToken, msg, 401, map[string]any{"error": "unauthorized"}},
		{"no channel", "POST", "/userlike/", testOutboundToken, msg, 401, map[string]any{"error": "unauthorized"}},
		{"nested path", "POST", "/userlike/support/x", testOutboundToken, msg, 401, map[string]any{"error": "unauthorized"}},
		{"other prefix", "POST", "/media/support", testOutboundToken, msg, 404, map[string]any{"error": "not found"}},
		{"GET", "GET", "/userlike/support", testOutboundToken, "", 405, map[string]any{"error": "method not allowed"}},
		{"no token", "POST", "/userlike/support", "", msg, 401, map[string]any{"error": "unauthorized"}},
		{"wrong token", "POST", "/userlike/support", "s3cret-outbound-tokeN", msg, 401, map[string]any{"error": "unauthorized"}},
		{"token prefix", "POST", "/userlike/support", "s3cret", msg, 401, map[string]any{"error": "unauthorized"}},
		{"channel without token", "POST", "/userlike/notoken", "", msg, 401, map[string]any{"error": "unauthorized"}},
		{"too large", "POST", "/userlike/support", testOutboundToken, big, 413, map[string]any{"error": "body too large"}},
		{"malformed", "POST", "/userlike/support", testOutboundToken, `{"email":`, 400, map[string]any{"error": "malformed JSON payload"}},
		{"array", "POST", "/userlike/support", testOutboundToken, `[1,2]`, 400, map[string]any{"error": "malformed JSON payload"}},
		{"no contact", "POST", "/userlike/support", testOutboundToken, `{"text":"hi"}`, 400, map[string]any{"error": "no contact address"}},
		{"contact not an address", "POST", "/userlike/support", testOutboundToken, `{"contact_identifier":"user 42","text":"hi"}`, 400,
			map[string]any{"error": "contact is not an email address"}},
		{"event only", "POST", "/userlike/support", testOutboundToken, `{"event":"typing","email":"jane@example.com"}`, 200,
			map[string]any{"status": "ignored"}},
		{"deleted unknown", "POST", "/userlike/support", testOutboundToken, `{"message":{"id":"zz","is_deleted":true},"email":"jane@example.com"}`, 200,
			map[string]any{"status": "not-cancelled"}},
		{"queued", "POST", "/userlike/support", testOutboundToken, msg, 200, map[string]any{"status": "queued", "id": float64(1)}},
		{"duplicate", "POST", "/userlike/support", testOutboundToken, msg, 200, map[string]any{"status": "duplicate"}},
		{"duplicate, nested shape", "POST", "/userlike/support", testOutboundToken,
			`{"message":{"id":"m-1","text":"Hello Jane"},"contact":{"email":"jane@example.com"}}`, 200, map[string]any{"status": "duplicate"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, got := f.do(t, c.method, c.path, c.token, strings.NewReader(c.body))
			if resp.StatusCode != c.status || fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("%d %v; want %d %v", resp.StatusCode, got, c.status, c.want)
			}
			if c.status == 405 && resp.Header.Get("Allow") != "POST" {
				t.Errorf("Allow = %q", resp.Header.Get("Allow"))
			}
		})
	}
	counts, err := f.db.OutboxCounts(context.Background(), "support")
	if err != nil || fmt.Sprint(counts) != "map[queued:1]" {
		t.Fatalf("outbox = %v, %v; want one queued item", counts, err)
	}
	it, err := f.db.Outbox(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if it.Contact != "jane@example.com" || it.Text != "Hello Jane" || it.Operator != "Olga" || it.UserlikeID != "id:m-1" ||
		!it.SendAfter.Equal(time.Unix(1_700_000_010, 0)) {
		t.Fatalf("queued item = %+v", it)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if fmt.Sprint(f.woken) != "[support]" {
		t.Errorf("Wake calls = %v, want one for the queued message", f.woken)
	}
	logs := f.logs.String()
	if strings.Contains(logs, testOutboundToken) {
		t.Error("the token appears in the logs")
	}
	if !strings.Contains(logs, "webhook: payload") || !strings.Contains(logs, "Hello Jane") {
		t.Errorf("debug channel did not log the payload:\n%s", logs)
	}
}

func TestWebhookDebugRedacts(t *testing.T) {
	f := newWebhookFixture(t)
	body := `{"email":"jane@example.com","text":"hi","api_token":"leak-me-not","id":7}`
	if resp, _ := f.do(t, "POST", "/userlike/support", testOutboundToken, strings.NewReader(body)); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if logs := f.logs.String(); strings.Contains(logs, "leak-me-not") || !strings.Contains(logs, `\"id\":7`) {
		t.Fatalf("debug log not redacted or missing:\n%s", logs)
	}
}

func TestWebhookDeleteCancels(t *testing.T) {
	f := newWebhookFixture(t)
	ctx := context.Background()
	post := func(body string) map[string]any {
		t.Helper()
		resp, got := f.do(t, "POST", "/userlike/support", testOutboundToken, strings.NewReader(body))
		if resp.StatusCode != 200 {
			t.Fatalf("POST %s: status %d %v", body, resp.StatusCode, got)
		}
		return got
	}
	post(`{"email":"jane@example.com","text":"oops, wrong customer","id":"d-1"}`)
	post(`{"email":"jane@example.com","text":"keep me","id":"d-2"}`)
	if got := post(`{"email":"jane@example.com","message":{"id":"d-1","is_deleted":true}}`); got["status"] != "cancelled" {
		t.Fatalf("delete = %v", got)
	}
	if got := post(`{"email":"jane@example.com","message":{"id":"d-1","is_deleted":"true"}}`); got["status"] != "cancelled" {
		t.Fatalf("delete again = %v", got)
	}
	counts, _ := f.db.OutboxCounts(ctx, "support")
	if fmt.Sprint(counts) != "map[cancelled:1 queued:1]" {
		t.Fatalf("outbox = %v", counts)
	}
	// Once sent, a deletion is answered 200 and logged.
	due, err := f.db.DueOutbox(ctx, time.Now().Add(time.Hour))
	if err != nil || len(due) != 1 {
		t.Fatalf("DueOutbox = %v, %v", due, err)
	}
	if _, err := f.db.MarkOutboxSending(ctx, due[0].IDs(), "x1@mailgate.test"); err != nil {
		t.Fatal(err)
	}
	if err := f.db.MarkOutboxSent(ctx, due[0].IDs(), "x1@mailgate.test"); err != nil {
		t.Fatal(err)
	}
	if got := post(`{"email":"jane@example.com","id":"d-2","is_deleted":1}`); got["status"] != "not-cancelled" || got["state"] != "sent" {
		t.Fatalf("delete after send = %v", got)
	}
	if !strings.Contains(f.logs.String(), "already sent") {
		t.Errorf("deleting a sent message was not logged:\n%s", f.logs.String())
	}
}

func TestWebhookStoreDown(t *testing.T) {
	f := newWebhookFixture(t)
	f.db.Close()
	resp, got := f.do(t, "POST", "/userlike/support", testOutboundToken,
		strings.NewReader(`{"email":"jane@example.com","text":"hi","id":"x"}`))
	if resp.StatusCode != 503 || got["error"] == nil || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("store down: %d %v", resp.StatusCode, got)
	}
	resp, _ = f.do(t, "POST", "/userlike/support", testOutboundToken,
		strings.NewReader(`{"email":"jane@example.com","id":"x","is_deleted":true}`))
	if resp.StatusCode != 503 {
		t.Fatalf("store down, delete: %d", resp.StatusCode)
	}
}

func TestTokenMatches(t *testing.T) {
	for _, c := range []struct {
		got, want string
		ok        bool
	}{
		{"abc", "abc", true},
		{"abd", "abc", false},
		{"ab", "abc", false},
		{"abcd", "abc", false},
		{"", "", false},
		{"x", "", false},
		{"", "abc", false},
	} {
		if got := tokenMatches(c.got, c.want); got != c.ok {
			t.Errorf("tokenMatches(%q, %q) = %v", c.got, c.want, got)
		}
	}
}

func BenchmarkWebhookAccept(b *testing.B) {
	f := newWebhookFixture(b)
	f.h.opts.Logger = nil
	f.h.log = slog.New(slog.DiscardHandler)
	channels := f.h.opts.Channels
	f.h.opts.Channels = func(name string) (WebhookChannel, bool) {
		c, ok := channels(name)
		c.Debug = false
		return c, ok
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		body := fmt.Sprintf(`{"email":"c%d@example.com","text":"Hello, your order has shipped.","operator_name":"Olga","id":"b-%d"}`, i%50, i)
		req := httptest.NewRequest("POST", "/userlike/support", strings.NewReader(body))
		req.Header.Set("API-SECURITY-TOKEN", testOutboundToken)
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}

// FuzzWebhookBody checks that no body makes the handler panic or answer
// anything but the documented statuses, and that a 200 "queued" is really
// in the store.
func FuzzWebhookBody(f *testing.F) {
	for _, s := range []string{
		`{"email":"jane@example.com","text":"hi","id":"1"}`,
		`{"message":{"id":2,"text":"x","is_deleted":true},"contact":{"email":"a@b.c"}}`,
		`{"email":"jane@example.com","url":"https://x.test/a.png"}`,
		`{"event":"typing"}`,
		`{"text":"no contact"}`,
		`[]`, `null`, `{"email":`, "",
	} {
		f.Add(s)
	}
	fx := newWebhookFixture(f)
	fx.h.log = slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/userlike/support", strings.NewReader(body))
		req.Header.Set("API-SECURITY-TOKEN", testOutboundToken)
		rec := httptest.NewRecorder()
		fx.h.ServeHTTP(rec, req)
		var resp map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("status %d with a body that is not JSON: %q", rec.Code, rec.Body)
		}
		switch rec.Code {
		case 200:
			if resp["status"] == "queued" {
				id, _ := resp["id"].(float64)
				if _, err := fx.db.Outbox(context.Background(), int64(id)); err != nil {
					t.Fatalf("queued id %v not in the store: %v", resp["id"], err)
				}
			}
		case 400, 413:
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
	})
}

// TestWebhookHidesChannelNames: without the token, an unknown channel and a
// known one get the same answer, and a flood of refused requests writes a
// bounded number of log lines.
func TestWebhookHidesChannelNames(t *testing.T) {
	f := newWebhookFixture(t)
	msg := `{"email":"jane@example.com","text":"hi","message":{"id":"1"}}`
	answer := func(path, token string) (int, string) {
		req := httptest.NewRequest("POST", path, strings.NewReader(msg))
		if token != "" {
			req.Header.Set("API-SECURITY-TOKEN", token)
		}
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	knownCode, knownBody := answer("/userlike/support", "wrong")
	for _, path := range []string{"/userlike/nope", "/userlike/support2", "/userlike/"} {
		for _, token := range []string{"", "wrong", testOutboundToken} {
			code, body := answer(path, token)
			if code != knownCode || body != knownBody {
				t.Errorf("POST %s token %q: %d %s, want the known channel's %d %s", path, token, code, body, knownCode, knownBody)
			}
		}
	}
	for range 1000 {
		answer("/userlike/nope", "")
	}
	if n := strings.Count(f.logs.String(), "refused"); n > 2 {
		t.Errorf("%d refusal log lines for ~1,000 refused requests at one instant, want at most 2", n)
	}
}

func TestLogLimiter(t *testing.T) {
	l := logLimiter{every: 10 * time.Second}
	t0 := time.Unix(1_700_000_000, 0)
	if n, ok := l.allow(t0); !ok || n != 0 {
		t.Fatalf("first line: %d %v", n, ok)
	}
	for i := range 5 {
		if _, ok := l.allow(t0.Add(time.Duration(i) * time.Second)); ok {
			t.Fatalf("line %d within the interval let through", i)
		}
	}
	if n, ok := l.allow(t0.Add(10 * time.Second)); !ok || n != 5 {
		t.Fatalf("after the interval: %d %v, want 5 true", n, ok)
	}
}
