package metrics_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"mailgate/metrics"
)

// get requests path from srv with method and returns status, content type
// and body.
func get(t *testing.T, srv *httptest.Server, method, path string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// readiness is a ready function whose answer the test switches.
type readiness struct {
	mu    sync.Mutex
	err   error
	calls int
	ctxOK bool
}

func (r *readiness) set(err error) {
	r.mu.Lock()
	r.err = err
	r.mu.Unlock()
}

func (r *readiness) ready(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.ctxOK = ctx != nil && ctx.Err() == nil
	return r.err
}

func TestHealthz(t *testing.T) {
	var r readiness
	r.set(errors.New("store: not open"))
	srv := httptest.NewServer(metrics.New().Handler(r.ready))
	defer srv.Close()

	// Liveness does not depend on readiness.
	code, ctype, body := get(t, srv, http.MethodGet, "/healthz")
	if code != http.StatusOK || ctype != "application/json" || body != `{"status":"ok"}`+"\n" {
		t.Errorf("GET /healthz = %d %q %q, want 200 application/json {\"status\":\"ok\"}", code, ctype, body)
	}
	if r.calls != 0 {
		t.Errorf("/healthz called the ready function %d times", r.calls)
	}
	if code, _, _ := get(t, srv, http.MethodHead, "/healthz"); code != http.StatusOK {
		t.Errorf("HEAD /healthz = %d, want 200", code)
	}
}

func TestReadyzTransitions(t *testing.T) {
	var r readiness
	srv := httptest.NewServer(metrics.New().Handler(r.ready))
	defer srv.Close()

	steps := []struct {
		err      error
		code     int
		status   string
		reason   string
		rawMatch string
	}{
		{err: errors.New(`imapsync: channel "support": not connected`), code: 503, status: "not ready",
			reason: `imapsync: channel "support": not connected`},
		{err: nil, code: 200, status: "ready", rawMatch: `{"status":"ready"}` + "\n"},
		{err: errors.New("store: migrations pending"), code: 503, status: "not ready", reason: "store: migrations pending"},
		{err: nil, code: 200, status: "ready"},
	}
	for i, s := range steps {
		r.set(s.err)
		code, ctype, body := get(t, srv, http.MethodGet, "/readyz")
		if code != s.code {
			t.Errorf("step %d: GET /readyz = %d, want %d (body %q)", i, code, s.code, body)
		}
		if ctype != "application/json" {
			t.Errorf("step %d: Content-Type %q, want application/json", i, ctype)
		}
		var doc struct {
			Status string  `json:"status"`
			Reason *string `json:"reason"`
		}
		if err := json.Unmarshal([]byte(body), &doc); err != nil {
			t.Fatalf("step %d: body %q: %v", i, body, err)
		}
		if doc.Status != s.status {
			t.Errorf("step %d: status %q, want %q", i, doc.Status, s.status)
		}
		switch {
		case s.reason == "" && doc.Reason != nil:
			t.Errorf("step %d: unexpected reason %q", i, *doc.Reason)
		case s.reason != "" && (doc.Reason == nil || *doc.Reason != s.reason):
			t.Errorf("step %d: reason %v, want %q", i, doc.Reason, s.reason)
		}
		if s.rawMatch != "" && body != s.rawMatch {
			t.Errorf("step %d: body %q, want %q", i, body, s.rawMatch)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls != len(steps) {
		t.Errorf("ready called %d times for %d requests", r.calls, len(steps))
	}
	if !r.ctxOK {
		t.Error("ready got a nil or cancelled context")
	}
}

func TestReadyzNilFunc(t *testing.T) {
	srv := httptest.NewServer(metrics.New().Handler(nil))
	defer srv.Close()
	if code, _, body := get(t, srv, http.MethodGet, "/readyz"); code != 200 || !strings.Contains(body, `"ready"`) {
		t.Errorf("GET /readyz with nil ready = %d %q, want 200 ready", code, body)
	}
}

func TestHandlerRoutes(t *testing.T) {
	srv := httptest.NewServer(metrics.New().Handler(nil))
	defer srv.Close()
	tests := []struct {
		method, path string
		code         int
	}{
		{http.MethodGet, "/metrics", 200},
		{http.MethodGet, "/healthz", 200},
		{http.MethodGet, "/readyz", 200},
		{http.MethodPost, "/readyz", 405},
		{http.MethodDelete, "/metrics", 405},
		{http.MethodGet, "/", 404},
		{http.MethodGet, "/metrics/extra", 404},
	}
	for _, tt := range tests {
		if code, _, _ := get(t, srv, tt.method, tt.path); code != tt.code {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, code, tt.code)
		}
	}
}

func TestReadyzLeases(t *testing.T) {
	m := metrics.New()
	var r readiness
	srv := httptest.NewServer(m.Handler(r.ready))
	t.Cleanup(srv.Close)
	if _, _, body := get(t, srv, "GET", "/readyz"); strings.Contains(body, "leases") {
		t.Fatalf("leases shown without SetLeaseFunc: %s", body)
	}
	m.SetLeaseFunc("mail1", func(ctx context.Context) []metrics.LeaseState {
		return []metrics.LeaseState{
			{Channel: "support", Holder: "mail1", Token: 3, Here: true},
			{Channel: "billing", Holder: "mail2", Token: 7},
			{Channel: "new"},
		}
	})
	want := `{"status":"ready","instance":"mail1","leases":[{"channel":"support","holder":"mail1","token":3,"here":true},{"channel":"billing","holder":"mail2","token":7,"here":false},{"channel":"new","here":false}]}` + "\n"
	if code, _, body := get(t, srv, "GET", "/readyz"); code != 200 || body != want {
		t.Fatalf("GET /readyz = %d %s, want 200 %s", code, body, want)
	}
	r.set(errors.New("lease: read holders: connection refused"))
	if code, _, body := get(t, srv, "GET", "/readyz"); code != 503 || !strings.Contains(body, `"instance":"mail1","leases":[`) {
		t.Fatalf("GET /readyz = %d %s, want 503 with the leases", code, body)
	}
}
