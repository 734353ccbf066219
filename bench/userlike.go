package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"sync"
	"time"
)

// markerRE finds the marker every benchmark mail carries in its text.
var markerRE = regexp.MustCompile(`\[bm:[a-z0-9]+-[0-9]+\]`)

// fakeUserlike is a Custom Channel Inbound URL on loopback that answers
// 200 at once and records when each marked text arrived.
type fakeUserlike struct {
	srv *http.Server
	ln  net.Listener

	mu      sync.Mutex
	posts   int                  // accepted POSTs, text and media
	first   time.Time            // first accepted POST
	last    time.Time            // last accepted POST
	arrived map[string]time.Time // marker -> first POST carrying it
	changed chan struct{}        // closed and replaced on every POST
}

// startFakeUserlike listens on 127.0.0.1.
func startFakeUserlike() (*fakeUserlike, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &fakeUserlike{ln: ln, arrived: map[string]time.Time{}, changed: make(chan struct{})}
	f.srv = &http.Server{Handler: http.HandlerFunc(f.serve), ReadHeaderTimeout: 10 * time.Second}
	go f.srv.Serve(ln)
	return f, nil
}

// url is the Inbound URL.
func (f *fakeUserlike) url() string { return "http://" + f.ln.Addr().String() + "/inbound" }

// close stops the server.
func (f *fakeUserlike) close() { f.srv.Close() }

func (f *fakeUserlike) serve(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	if r.Method != http.MethodPost || r.Header.Get("API-SECURITY-TOKEN") != inboundToken {
		http.Error(w, "no", http.StatusUnauthorized)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read error", http.StatusBadRequest)
		return
	}
	var msg struct {
		Text string `json:"text"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		http.Error(w, "bad json", http.StatusBadRequest)
		return
	}
	marker := markerRE.FindString(msg.Text)
	f.mu.Lock()
	f.posts++
	if f.first.IsZero() {
		f.first = now
	}
	f.last = now
	if _, ok := f.arrived[marker]; marker != "" && !ok {
		f.arrived[marker] = now
	}
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"status":"ok"}`)
}

// reset forgets every POST.
func (f *fakeUserlike) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.posts, f.first, f.last = 0, time.Time{}, time.Time{}
	f.arrived = map[string]time.Time{}
}

// waitPosts waits until at least n POSTs were accepted, or timeout; it
// returns the count and the time of the last POST.
func (f *fakeUserlike) waitPosts(n int, timeout time.Duration) (int, time.Time) {
	deadline := time.After(timeout)
	for {
		f.mu.Lock()
		got, last, ch := f.posts, f.last, f.changed
		f.mu.Unlock()
		if got >= n {
			return got, last
		}
		select {
		case <-ch:
		case <-deadline:
			return got, last
		}
	}
}

// arrival returns when the text with marker arrived.
func (f *fakeUserlike) arrival(marker string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.arrived[marker]
	return t, ok
}
