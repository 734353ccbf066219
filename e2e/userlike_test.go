//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// userlikeMode is how the fake Userlike answers inbound POSTs.
type userlikeMode int

const (
	// modeOK answers 200 and records the message as accepted.
	modeOK userlikeMode = iota
	// modeUnavailable answers 503.
	modeUnavailable
	// modeHang never answers until the client gives up or the mode changes.
	modeHang
)

// inboundPost is one POST the fake Userlike received.
type inboundPost struct {
	At     time.Time
	Status int    // what the fake answered (0 while a hung request waits)
	Body   []byte // raw JSON
	Email  string
	Name   string
	Text   string
	URL    string
}

// fakeUserlike is the Inbound URL of a Userlike Custom Channel: it checks
// the API-SECURITY-TOKEN header and records every POST.
type fakeUserlike struct {
	srv   *httptest.Server
	token string

	mu       sync.Mutex
	mode     userlikeMode
	latency  time.Duration // added before answering 200
	release  chan struct{} // closed when the mode leaves modeHang
	posts    []inboundPost // every POST, in arrival order
	badToken int
	changed  chan struct{} // closed and replaced on every new POST
}

// newFakeUserlike starts a fake Userlike on 127.0.0.1; it stops when the
// test ends.
func newFakeUserlike(t testing.TB, token string) *fakeUserlike {
	f := &fakeUserlike{token: token, release: make(chan struct{}), changed: make(chan struct{})}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		f.SetMode(modeOK)
		f.srv.CloseClientConnections()
		f.srv.Close()
	})
	return f
}

// InboundURL is the URL mailgate posts to.
func (f *fakeUserlike) InboundURL() string { return f.srv.URL + "/inbound/support" }

// SetMode changes how later (and hung) POSTs are answered.
func (f *fakeUserlike) SetMode(m userlikeMode) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mode == modeHang && m != modeHang {
		close(f.release)
		f.release = make(chan struct{})
	}
	f.mode = m
}

func (f *fakeUserlike) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/inbound/support" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if r.Header.Get("API-SECURITY-TOKEN") != f.token {
		f.mu.Lock()
		f.badToken++
		f.mu.Unlock()
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read error", http.StatusBadRequest)
		return
	}
	p := inboundPost{At: time.Now(), Body: body}
	var fields struct {
		Email string `json:"email"`
		Name  string `json:"name"`
		Text  string `json:"text"`
		URL   string `json:"url"`
	}
	if err := json.Unmarshal(body, &fields); err != nil {
		p.Status = http.StatusBadRequest
		f.record(p)
		http.Error(w, `{"error":"bad json"}`, http.StatusBadRequest)
		return
	}
	p.Email, p.Name, p.Text, p.URL = fields.Email, fields.Name, fields.Text, fields.URL

	f.mu.Lock()
	mode, release, latency := f.mode, f.release, f.latency
	f.mu.Unlock()
	if latency > 0 && mode == modeOK {
		select {
		case <-r.Context().Done():
			return
		case <-time.After(latency):
		}
	}
	switch mode {
	case modeUnavailable:
		p.Status = http.StatusServiceUnavailable
		f.record(p)
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	case modeHang:
		idx := f.record(p)
		select {
		case <-r.Context().Done():
			return
		case <-release:
		}
		if r.Context().Err() != nil {
			return // mailgate gave up at the moment of release
		}
		f.mu.Lock()
		f.posts[idx].Status = http.StatusOK
		f.mu.Unlock()
	default:
		p.Status = http.StatusOK
		f.record(p)
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"status":"ok"}`)
}

// SetLatency makes every later accepted POST take d before its answer.
func (f *fakeUserlike) SetLatency(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.latency = d
}

// record appends p and wakes the waiters; it returns p's index.
func (f *fakeUserlike) record(p inboundPost) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.posts = append(f.posts, p)
	close(f.changed)
	f.changed = make(chan struct{})
	return len(f.posts) - 1
}

// Accepted returns the POSTs answered 200, in arrival order.
func (f *fakeUserlike) Accepted() []inboundPost {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []inboundPost
	for _, p := range f.posts {
		if p.Status == http.StatusOK {
			out = append(out, p)
		}
	}
	return out
}

// All returns every POST with a valid token, in arrival order.
func (f *fakeUserlike) All() []inboundPost {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]inboundPost(nil), f.posts...)
}

// BadTokens is the number of POSTs refused for a wrong token.
func (f *fakeUserlike) BadTokens() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.badToken
}

// WaitAccepted waits until cond holds for the accepted POSTs, or timeout.
// It returns the last accepted POSTs and whether cond held.
func (f *fakeUserlike) WaitAccepted(timeout time.Duration, cond func([]inboundPost) bool) ([]inboundPost, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		f.mu.Lock()
		ch := f.changed
		f.mu.Unlock()
		posts := f.Accepted()
		if cond(posts) {
			return posts, true
		}
		select {
		case <-ctx.Done():
			return f.Accepted(), false
		case <-ch:
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// fetchMedia downloads a media URL as Userlike would and returns the
// SHA-256 of the body (hex) and the Content-Type.
func fetchMedia(url string) (sum, contentType string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return "", "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return "", "", fmt.Errorf("GET %s: %w", url, err)
	}
	return hex.EncodeToString(h.Sum(nil)), resp.Header.Get("Content-Type"), nil
}

// describePosts renders posts for failure messages.
func describePosts(posts []inboundPost) string {
	var b strings.Builder
	for i, p := range posts {
		fmt.Fprintf(&b, "  #%d %s status=%d %s\n", i, p.At.Format("15:04:05.000"), p.Status, p.Body)
	}
	if b.Len() == 0 {
		return "  (none)\n"
	}
	return b.String()
}
