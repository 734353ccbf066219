package userlike

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

const testToken = "tok-9f8e7d6c5b4a-inbound-secret"

// sleepRecorder is an injectable Sleep that records waits instead of
// sleeping.
type sleepRecorder struct {
	mu     sync.Mutex
	waits  []time.Duration
	onCall func(n int) // called with the number of the sleep, from 1
}

func (r *sleepRecorder) Sleep(ctx context.Context, d time.Duration) error {
	r.mu.Lock()
	r.waits = append(r.waits, d)
	n := len(r.waits)
	r.mu.Unlock()
	if r.onCall != nil {
		r.onCall(n)
	}
	return ctx.Err()
}

func (r *sleepRecorder) Waits() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.waits...)
}

// scriptedServer answers the i-th request with handlers[i], repeating the
// last one, and records the requests it saw.
type scriptedServer struct {
	*httptest.Server
	mu       sync.Mutex
	requests []*http.Request
	bodies   []string
}

func newScriptedServer(t *testing.T, handlers ...http.HandlerFunc) *scriptedServer {
	t.Helper()
	s := &scriptedServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		n := len(s.requests)
		s.requests = append(s.requests, r)
		s.bodies = append(s.bodies, string(body))
		s.mu.Unlock()
		handlers[min(n, len(handlers)-1)](w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *scriptedServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

func status(code int, body string, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

func newTestClient(url string, rec *sleepRecorder, maxAttempts int) *Client {
	return NewClient(ClientOptions{
		InboundURL:  url,
		Token:       testToken,
		MaxAttempts: maxAttempts,
		MinBackoff:  time.Second,
		MaxBackoff:  time.Minute,
		UserAgent:   "mailgate-test/1",
		Sleep:       rec.Sleep,
	})
}

func assertNoToken(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), testToken) {
		t.Fatalf("error leaks the token: %v", err)
	}
}

func TestPostSendsTokenAndBody(t *testing.T) {
	srv := newScriptedServer(t, status(http.StatusAccepted, `{"ok":true}`))
	rec := &sleepRecorder{}
	body := []byte(`{"email":"jane@example.com","text":"hi"}`)
	if err := newTestClient(srv.URL+"/inbound/abc", rec, 0).Post(context.Background(), body); err != nil {
		t.Fatalf("Post() = %v", err)
	}
	if srv.count() != 1 {
		t.Fatalf("%d requests, want 1", srv.count())
	}
	r := srv.requests[0]
	checks := []struct{ what, got, want string }{
		{"method", r.Method, http.MethodPost},
		{"path", r.URL.Path, "/inbound/abc"},
		{TokenHeader, r.Header.Get(TokenHeader), testToken},
		{"Content-Type", r.Header.Get("Content-Type"), "application/json"},
		{"User-Agent", r.Header.Get("User-Agent"), "mailgate-test/1"},
		{"body", srv.bodies[0], string(body)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if len(rec.Waits()) != 0 {
		t.Errorf("slept %v on success", rec.Waits())
	}
}

func TestPostAny2xxIsSuccess(t *testing.T) {
	for _, code := range []int{200, 201, 202, 204, 299} {
		srv := newScriptedServer(t, status(code, ""))
		if err := newTestClient(srv.URL, &sleepRecorder{}, 1).Post(context.Background(), []byte(`{}`)); err != nil {
			t.Errorf("status %d: Post() = %v", code, err)
		}
	}
}

func TestPostRetries503(t *testing.T) {
	srv := newScriptedServer(t,
		status(http.StatusServiceUnavailable, "busy"),
		status(http.StatusBadGateway, "still busy"),
		status(http.StatusOK, "{}"),
	)
	rec := &sleepRecorder{}
	if err := newTestClient(srv.URL, rec, 0).Post(context.Background(), []byte(`{}`)); err != nil {
		t.Fatalf("Post() = %v", err)
	}
	if srv.count() != 3 {
		t.Errorf("%d requests, want 3", srv.count())
	}
	waits := rec.Waits()
	if len(waits) != 2 {
		t.Fatalf("slept %v, want 2 waits", waits)
	}
	// Full jitter: attempt n waits in [0, MinBackoff*2^(n-1)).
	for i, d := range waits {
		if ceiling := time.Second << i; d < 0 || d >= ceiling {
			t.Errorf("wait %d = %v, want in [0, %v)", i+1, d, ceiling)
		}
	}
}

func TestPostHonoursRetryAfter(t *testing.T) {
	date := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	srv := newScriptedServer(t,
		status(http.StatusTooManyRequests, "slow down", "Retry-After", "7"),
		status(http.StatusServiceUnavailable, "", "Retry-After", date),
		status(http.StatusTooManyRequests, "", "Retry-After", "86400"),
		status(http.StatusOK, ""),
	)
	rec := &sleepRecorder{}
	if err := newTestClient(srv.URL, rec, 0).Post(context.Background(), []byte(`{}`)); err != nil {
		t.Fatalf("Post() = %v", err)
	}
	waits := rec.Waits()
	if len(waits) != 3 {
		t.Fatalf("slept %v, want 3 waits", waits)
	}
	if waits[0] != 7*time.Second {
		t.Errorf("Retry-After: 7 gave wait %v, want 7s", waits[0])
	}
	// The HTTP date is 90s ahead, less the time taken and its whole-second
	// precision; either way it is capped at MaxBackoff (1m).
	if waits[1] != time.Minute {
		t.Errorf("Retry-After: <date 90s ahead> gave wait %v, want the 1m cap", waits[1])
	}
	if waits[2] != time.Minute {
		t.Errorf("Retry-After: 86400 gave wait %v, want the 1m cap", waits[2])
	}
}

func TestPostOnceReportsRetryAfter(t *testing.T) {
	srv := newScriptedServer(t, status(http.StatusTooManyRequests, "later", "Retry-After", "12"))
	c := newTestClient(srv.URL, &sleepRecorder{}, 0)
	err := c.PostOnce(context.Background(), []byte(`{}`))
	var te *TemporaryError
	if !errors.As(err, &te) {
		t.Fatalf("PostOnce() = %v, want *TemporaryError", err)
	}
	if te.Status != 429 || te.Body != "later" || te.RetryAfter != 12*time.Second || te.Err != nil {
		t.Errorf("PostOnce() = %+v", te)
	}
	if IsPermanent(err) {
		t.Error("IsPermanent(429) = true")
	}
	if got := c.RetryDelay(5, err); got != 12*time.Second {
		t.Errorf("RetryDelay() = %v, want the server's 12s", got)
	}
}

func TestPostTemporaryStatuses(t *testing.T) {
	for _, code := range []int{408, 425, 429, 500, 502, 503, 504, 599} {
		srv := newScriptedServer(t, status(code, "x"))
		err := newTestClient(srv.URL, &sleepRecorder{}, 0).PostOnce(context.Background(), []byte(`{}`))
		var te *TemporaryError
		if !errors.As(err, &te) || te.Status != code {
			t.Errorf("status %d: PostOnce() = %v, want *TemporaryError", code, err)
		}
	}
}

func TestPostPermanent(t *testing.T) {
	for _, code := range []int{400, 401, 403, 404, 409, 413, 422, 302} {
		long := strings.Repeat("x", 2000)
		srv := newScriptedServer(t, status(code, `{"error":"invalid email"}`+long, "Location", "http://127.0.0.1:1/elsewhere"))
		rec := &sleepRecorder{}
		err := newTestClient(srv.URL, rec, 0).Post(context.Background(), []byte(`{}`))
		var pe *PermanentError
		if !errors.As(err, &pe) || !IsPermanent(err) {
			t.Fatalf("status %d: Post() = %v, want *PermanentError", code, err)
		}
		if pe.Status != code || !strings.HasPrefix(pe.Body, `{"error":"invalid email"}`) || len(pe.Body) != maxErrorBody {
			t.Errorf("status %d: got status %d, body of %d bytes %q", code, pe.Status, len(pe.Body), pe.Body[:40])
		}
		if !strings.Contains(err.Error(), "invalid email") {
			t.Errorf("status %d: error %q does not show the body", code, err)
		}
		if srv.count() != 1 || len(rec.Waits()) != 0 {
			t.Errorf("status %d: %d requests, waits %v; want 1 request, no waits", code, srv.count(), rec.Waits())
		}
	}
}

func TestPostNetworkErrorIsTemporary(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	rec := &sleepRecorder{}
	c := newTestClient(url, rec, 3)
	err := c.PostOnce(context.Background(), []byte(`{}`))
	var te *TemporaryError
	if !errors.As(err, &te) || te.Status != 0 || te.Err == nil {
		t.Fatalf("PostOnce() = %v, want *TemporaryError with a network error", err)
	}
	err = c.Post(context.Background(), []byte(`{}`))
	if !errors.As(err, &te) || IsPermanent(err) {
		t.Fatalf("Post() = %v, want a temporary error", err)
	}
	if !strings.Contains(err.Error(), "3 attempts") {
		t.Errorf("Post() = %q, want the attempt count", err)
	}
	if len(rec.Waits()) != 2 {
		t.Errorf("waits %v, want 2 (between 3 attempts)", rec.Waits())
	}
}

func TestPostContextCancelStopsRetries(t *testing.T) {
	srv := newScriptedServer(t, status(http.StatusServiceUnavailable, ""))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &sleepRecorder{onCall: func(n int) {
		if n == 2 {
			cancel()
		}
	}}
	err := newTestClient(srv.URL, rec, 0).Post(ctx, []byte(`{}`))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Post() = %v, want context.Canceled", err)
	}
	var te *TemporaryError
	if !errors.As(err, &te) || te.Status != 503 {
		t.Errorf("Post() = %v, want it to carry the last 503", err)
	}
	if srv.count() != 2 {
		t.Errorf("%d requests, want 2", srv.count())
	}
}

func TestPostContextAlreadyDone(t *testing.T) {
	srv := newScriptedServer(t, status(http.StatusOK, ""))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := NewClient(ClientOptions{InboundURL: srv.URL, Token: testToken}).Post(ctx, []byte(`{}`))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Post() = %v, want context.Canceled", err)
	}
	if srv.count() != 0 {
		t.Errorf("%d requests with a done context", srv.count())
	}
}

func TestDefaultSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := sleepTimer(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("sleepTimer() = %v", err)
	}
	if err := sleepTimer(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("sleepTimer() = %v", err)
	}
}

func TestTokenNeverInErrors(t *testing.T) {
	echo := func(w http.ResponseWriter, r *http.Request) {
		// A misbehaving server that echoes the request headers, with the
		// token placed across the 512-byte cut.
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, strings.Repeat("-", maxErrorBody-5)+r.Header.Get(TokenHeader)+" and again "+r.Header.Get(TokenHeader))
	}
	echo5xx := func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "token was "+r.Header.Get(TokenHeader))
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	srv400 := newScriptedServer(t, echo)
	srv500 := newScriptedServer(t, echo5xx)
	ctx := context.Background()
	errs := []error{
		newTestClient(srv400.URL, &sleepRecorder{}, 1).Post(ctx, []byte(`{}`)),
		newTestClient(srv500.URL, &sleepRecorder{}, 2).Post(ctx, []byte(`{}`)),
		newTestClient(srv500.URL, &sleepRecorder{}, 0).PostOnce(ctx, []byte(`{}`)),
		newTestClient(closed.URL, &sleepRecorder{}, 2).Post(ctx, []byte(`{}`)),
		newTestClient("not a url", &sleepRecorder{}, 0).Post(ctx, []byte(`{}`)),
		// A network error quoting a URL that happens to hold the token.
		newTestClient(closed.URL+"/"+testToken, &sleepRecorder{}, 1).Post(ctx, []byte(`{}`)),
	}
	for i, err := range errs {
		if err == nil {
			t.Errorf("case %d: no error", i)
			continue
		}
		assertNoToken(t, err)
		var pe *PermanentError
		if errors.As(err, &pe) && strings.Contains(pe.Body, testToken[:len(testToken)/2]) {
			t.Errorf("case %d: body keeps part of the token: %q", i, pe.Body)
		}
	}
}

func TestBadInboundURLIsPermanent(t *testing.T) {
	for _, u := range []string{"", "not a url", "ftp://example.com/x", "/relative", "http://"} {
		err := newTestClient(u, &sleepRecorder{}, 0).Post(context.Background(), []byte(`{}`))
		if !IsPermanent(err) {
			t.Errorf("InboundURL %q: Post() = %v, want permanent", u, err)
		}
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	var leaked bool
	other := newScriptedServer(t, func(w http.ResponseWriter, r *http.Request) {
		leaked = r.Header.Get(TokenHeader) != ""
	})
	srv := newScriptedServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL, http.StatusTemporaryRedirect)
	})
	c := NewClient(ClientOptions{InboundURL: srv.URL, Token: testToken, HTTPClient: &http.Client{}})
	err := c.Post(context.Background(), []byte(`{}`))
	if !IsPermanent(err) {
		t.Errorf("Post() = %v, want permanent for a redirect", err)
	}
	if other.count() != 0 || leaked {
		t.Error("the redirect was followed")
	}
}

func TestRetryDelay(t *testing.T) {
	c := NewClient(ClientOptions{MinBackoff: time.Second, MaxBackoff: 10 * time.Second})
	for attempt := range 80 {
		d := c.RetryDelay(attempt, errors.New("x"))
		ceiling := 10 * time.Second
		if attempt >= 1 && attempt <= 4 {
			ceiling = time.Second << (attempt - 1)
		}
		if d < 0 || d >= ceiling {
			t.Errorf("RetryDelay(%d) = %v, want in [0, %v)", attempt, d, ceiling)
		}
	}
	withAfter := &TemporaryError{Status: 503, RetryAfter: time.Hour}
	if d := c.RetryDelay(1, withAfter); d != 10*time.Second {
		t.Errorf("RetryDelay with Retry-After 1h = %v, want the 10s cap", d)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"-5", 0},
		{" 120 ", 2 * time.Minute},
		{"soon", 0},
		{"1.5", 0},
		{"Sat, 01 Mar 2025 10:00:30 GMT", 30 * time.Second},
		{"Sat, 01 Mar 2025 09:59:00 GMT", 0},
		{"Saturday, 01-Mar-25 10:01:00 GMT", time.Minute},
		{"99999999999999999999", 0},
		{"9999999999999", 1<<63 - 1},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// TestDefaultClientKeepsIdleConnections checks that a Client built without
// an HTTPClient keeps enough idle connections for a channel's concurrent
// posts: net/http's default transport keeps 2 per host, so a burst of 4
// posts closed and redialled half its connections (566 dials for 3,300
// posts in the backlog bench).
func TestDefaultClientKeepsIdleConnections(t *testing.T) {
	c := NewClient(ClientOptions{InboundURL: "http://127.0.0.1/inbound", Token: testToken})
	tr, ok := c.http.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("transport is %T, want its own *http.Transport", c.http.Transport)
	}
	if tr == http.DefaultTransport {
		t.Fatal("the client shares http.DefaultTransport")
	}
	if tr.MaxIdleConnsPerHost < 8 {
		t.Fatalf("MaxIdleConnsPerHost = %d, want at least 8 (4 posts in flight per channel)", tr.MaxIdleConnsPerHost)
	}
	if tr.Proxy == nil || tr.TLSHandshakeTimeout == 0 {
		t.Fatal("the transport lost http.DefaultTransport's proxy and timeouts")
	}
}
