package userliketest

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"

	"mailgate/userlike"
)

// Post is one POST an Inbound received with a valid token.
type Post struct {
	At time.Time
	// Status is what the Inbound answered; 0 while a held request waits.
	Status int
	// Body is the raw JSON; Message is it decoded (zero when it is not
	// JSON).
	Body    []byte
	Message userlike.InboundMessage
}

// Mode is how an Inbound answers.
type Mode int

const (
	// ModeOK answers 200 (or what Respond says).
	ModeOK Mode = iota
	// ModeUnavailable answers 503.
	ModeUnavailable
	// ModeHold holds every request until the mode changes or the client
	// gives up, then answers 200.
	ModeHold
)

// Inbound is a recording Custom Channel Inbound URL for tests and
// benchmarks: it checks the API-SECURITY-TOKEN header, decodes the JSON,
// records every POST and answers as its Mode, its Respond hook and its
// latency say. Unlike Center it fetches nothing and prints nothing. Serve
// it with httptest.NewServer or an http.Server; it answers every path.
type Inbound struct {
	token string

	// OnAccept, when set before the first request, is called with every
	// POST answered 200, in the handler's goroutine.
	OnAccept func(Post)

	mu       sync.Mutex
	respond  func(m userlike.InboundMessage, attempt int) int
	mode     Mode
	latency  time.Duration
	release  chan struct{} // closed when the mode leaves ModeHold
	posts    []Post
	accepted int  // POSTs answered 200
	lean     bool // decode only email and url, keep only At, Status and Message.Email
	tries    map[string]int
	badToken int
	changed  chan struct{} // closed and replaced on every change of posts
}

// NewInbound returns an Inbound that accepts token.
func NewInbound(token string) *Inbound {
	return &Inbound{token: token, release: make(chan struct{}), changed: make(chan struct{}), tries: map[string]int{}}
}

// SetMode changes how later (and held) POSTs are answered.
func (in *Inbound) SetMode(m Mode) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.mode == ModeHold && m != ModeHold {
		close(in.release)
		in.release = make(chan struct{})
	}
	in.mode = m
}

// SetRespond makes fn pick the status of every later POST in ModeOK from
// the message and how many times the same message (email, text and URL)
// has come while a hook was set, from 1; 0 means 200. nil answers 200
// again.
func (in *Inbound) SetRespond(fn func(m userlike.InboundMessage, attempt int) int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.respond = fn
}

// SetLatency makes every later POST in ModeOK wait d before its answer.
func (in *Inbound) SetLatency(d time.Duration) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.latency = d
}

// ServeHTTP implements http.Handler.
func (in *Inbound) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusMethodNotAllowed, `{"error":"POST only"}`)
		return
	}
	if subtle.ConstantTimeCompare([]byte(r.Header.Get(userlike.TokenHeader)), []byte(in.token)) != 1 {
		in.mu.Lock()
		in.badToken++
		in.mu.Unlock()
		writeJSON(w, http.StatusUnauthorized, `{"error":"bad token"}`)
		return
	}
	body, err := readBody(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, `{"error":"read error"}`)
		return
	}
	in.mu.Lock()
	lean := in.lean
	in.mu.Unlock()
	p := Post{At: time.Now(), Body: body}
	if lean {
		var m leanMessage
		err = json.Unmarshal(body, &m)
		p.Message = userlike.InboundMessage{Email: m.Email, URL: m.URL}
	} else {
		err = json.Unmarshal(body, &p.Message)
	}
	if err != nil {
		p.Status = http.StatusBadRequest
		in.record(p)
		writeJSON(w, http.StatusBadRequest, `{"error":"bad json"}`)
		return
	}
	in.mu.Lock()
	mode, release, latency, respond := in.mode, in.release, in.latency, in.respond
	attempt := 0
	if respond != nil {
		key := p.Message.Email + "\x00" + p.Message.Text + "\x00" + p.Message.URL
		in.tries[key]++
		attempt = in.tries[key]
	}
	in.mu.Unlock()

	status := http.StatusOK
	switch mode {
	case ModeUnavailable:
		status = http.StatusServiceUnavailable
	case ModeHold:
		i := in.record(p)
		select {
		case <-r.Context().Done():
			return
		case <-release:
		}
		if r.Context().Err() != nil {
			return // the client gave up at the moment of release
		}
		in.mu.Lock()
		in.posts[i].Status = http.StatusOK
		in.accepted++
		p.Status = http.StatusOK
		in.notify()
		in.mu.Unlock()
		in.answer(w, p)
		return
	default:
		if latency > 0 {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(latency):
			}
		}
		if respond != nil {
			if s := respond(p.Message, attempt); s != 0 {
				status = s
			}
		}
	}
	p.Status = status
	in.record(p)
	if status != http.StatusOK {
		writeJSON(w, status, `{"error":"refused by the test"}`)
		return
	}
	in.answer(w, p)
}

// maxBody is the largest request body an Inbound reads; a longer one is
// cut there, and fails to decode.
const maxBody = 1 << 20

// readBody reads r's body, up to maxBody bytes, in one allocation when
// the client sent its length.
func readBody(r *http.Request) ([]byte, error) {
	if n := r.ContentLength; n >= 0 && n <= maxBody {
		b := make([]byte, n)
		_, err := io.ReadFull(r.Body, b)
		return b, err
	}
	return io.ReadAll(io.LimitReader(r.Body, maxBody))
}

// leanMessage is what a lean Inbound decodes of a POST: the JSON is still
// checked whole, but the text is not copied out of it.
type leanMessage struct {
	Email string `json:"email"`
	URL   string `json:"url"`
}

func (in *Inbound) answer(w http.ResponseWriter, p Post) {
	if in.OnAccept != nil {
		in.OnAccept(p)
	}
	writeJSON(w, http.StatusOK, `{"status":"ok"}`)
}

// record appends p and wakes the waiters; it returns p's index.
func (in *Inbound) record(p Post) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	if p.Status == http.StatusOK {
		in.accepted++
	}
	if in.lean {
		p = Post{At: p.At, Status: p.Status, Message: userlike.InboundMessage{Email: p.Message.Email}}
	}
	in.posts = append(in.posts, p)
	in.notify()
	return len(in.posts) - 1
}

// Lean makes the Inbound decode only the email and url of each later POST
// (the JSON is still checked whole) and keep only its time, status and
// contact, for benchmarks that post thousands of emails on the cores of
// the program they measure. OnAccept still sees the raw Body, and the
// Message with Email and URL; a Respond hook's attempt counts ignore the
// text in lean mode.
func (in *Inbound) Lean() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.lean = true
}

// Reset forgets every POST.
func (in *Inbound) Reset() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.posts, in.accepted, in.badToken = nil, 0, 0
	in.tries = map[string]int{}
	in.notify()
}

// WaitCount waits until at least n POSTs were answered 200, or ctx ends;
// it returns how many were and when the last POST came (zero without
// any). Unlike Wait it costs nothing per POST.
func (in *Inbound) WaitCount(ctx context.Context, n int) (int, time.Time) {
	for {
		in.mu.Lock()
		got, ch := in.accepted, in.changed
		var last time.Time
		if len(in.posts) > 0 {
			last = in.posts[len(in.posts)-1].At
		}
		in.mu.Unlock()
		if got >= n {
			return got, last
		}
		select {
		case <-ctx.Done():
			return got, last
		case <-ch:
		}
	}
}

// notify wakes the waiters; in.mu must be held.
func (in *Inbound) notify() {
	close(in.changed)
	in.changed = make(chan struct{})
}

// Posts returns every POST with a valid token, in arrival order.
func (in *Inbound) Posts() []Post {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]Post(nil), in.posts...)
}

// Accepted returns the POSTs answered 200, in arrival order.
func (in *Inbound) Accepted() []Post {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []Post
	for _, p := range in.posts {
		if p.Status == http.StatusOK {
			out = append(out, p)
		}
	}
	return out
}

// BadTokens is the number of POSTs refused for a wrong token.
func (in *Inbound) BadTokens() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.badToken
}

// Wait waits until cond holds for the accepted POSTs, or ctx ends. It
// returns the accepted POSTs and whether cond held. cond runs on every
// change, so it should be cheap.
func (in *Inbound) Wait(ctx context.Context, cond func([]Post) bool) ([]Post, bool) {
	for {
		in.mu.Lock()
		ch := in.changed
		in.mu.Unlock()
		posts := in.Accepted()
		if cond(posts) {
			return posts, true
		}
		select {
		case <-ctx.Done():
			return in.Accepted(), false
		case <-ch:
		}
	}
}
