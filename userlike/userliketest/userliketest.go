// Package userliketest is a simulated Userlike Message Center for one Custom
// Channel. It receives inbound messages the way Userlike does (token check,
// JSON body, a fetch of every media URL) and sends operator replies to the
// channel's Outbound URL. `mailgate demo` and `mailgate simulate-userlike`
// use it, so admins can see the whole loop before they connect the real
// Userlike.
package userliketest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"mailgate/userlike"
)

// Options configures a Center.
type Options struct {
	// InboundToken is what mailgate must send in API-SECURITY-TOKEN.
	InboundToken string
	// OutboundURL is mailgate's webhook, OutboundToken the token sent
	// with every operator reply.
	OutboundURL, OutboundToken string
	// Out receives one line per event, for a console; may be nil.
	Out io.Writer
	// Operator is the name replies are sent under (default "Olivia").
	Operator string
	// HTTPClient fetches media and posts replies (default: 30 s timeout).
	HTTPClient *http.Client
}

// Entry is one message of a conversation.
type Entry struct {
	// FromContact is true for a customer message, false for a reply.
	FromContact bool
	Name, Text  string
	// MediaURL, with the fetched file's size, type and sha256.
	MediaURL               string
	MediaSize              int64
	MediaType, MediaSHA256 string
	MediaStatus            int
	At                     time.Time
}

// Center is a simulated Message Center. Its ServeHTTP is the channel's
// Inbound URL.
type Center struct {
	opts  Options
	mu    sync.Mutex
	convs map[string][]Entry
	last  string
	seq   int
}

// New returns a Center.
func New(opts Options) *Center {
	if opts.Operator == "" {
		opts.Operator = "Olivia"
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	return &Center{opts: opts, convs: map[string][]Entry{}}
}

// ServeHTTP accepts an inbound message: POST with API-SECURITY-TOKEN and a
// JSON body with email and either text or url.
func (c *Center) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeJSON(w, http.StatusMethodNotAllowed, `{"error":"method not allowed"}`)
		return
	}
	got := sha256.Sum256([]byte(r.Header.Get(userlike.TokenHeader)))
	want := sha256.Sum256([]byte(c.opts.InboundToken))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		writeJSON(w, http.StatusUnauthorized, `{"error":"unauthorized"}`)
		return
	}
	var m userlike.InboundMessage
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&m); err != nil || m.Email == "" || (m.Text == "") == (m.URL == "") {
		writeJSON(w, http.StatusBadRequest, `{"error":"want email and exactly one of text, url"}`)
		return
	}
	e := Entry{FromContact: true, Name: m.Name, Text: m.Text, MediaURL: m.URL, At: time.Now()}
	if m.URL != "" {
		c.fetch(r.Context(), &e)
	}
	c.mu.Lock()
	c.convs[m.Email] = append(c.convs[m.Email], e)
	c.last = m.Email
	c.mu.Unlock()
	c.print(m.Email, e)
	writeJSON(w, http.StatusOK, `{"status":"ok"}`)
}

// fetch downloads a media URL as Userlike does, recording what it got.
func (c *Center) fetch(ctx context.Context, e *Entry) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.MediaURL, nil)
	if err != nil {
		return
	}
	resp, err := c.opts.HTTPClient.Do(req)
	if err != nil {
		e.MediaStatus = -1
		return
	}
	defer resp.Body.Close()
	h := sha256.New()
	e.MediaSize, _ = io.Copy(h, resp.Body)
	e.MediaStatus = resp.StatusCode
	e.MediaType, _, _ = mime.ParseMediaType(resp.Header.Get("Content-Type"))
	e.MediaSHA256 = hex.EncodeToString(h.Sum(nil))
}

func (c *Center) print(contact string, e Entry) {
	if c.opts.Out == nil {
		return
	}
	who := contact
	if e.Name != "" {
		who = e.Name + " <" + contact + ">"
	}
	if !e.FromContact {
		who = e.Name + " (operator) -> " + contact
	}
	switch {
	case e.MediaURL != "":
		fmt.Fprintf(c.opts.Out, "[userlike] %s: media %s (HTTP %d, %s, %d bytes, sha256 %.12s)\n", who, e.MediaURL, e.MediaStatus, e.MediaType, e.MediaSize, e.MediaSHA256)
	default:
		fmt.Fprintf(c.opts.Out, "[userlike] %s:\n%s\n", who, indent(e.Text))
	}
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// Reply sends an operator message to contact through the Outbound URL, as
// Userlike does, and returns the HTTP status.
func (c *Center) Reply(ctx context.Context, contact, text string) (int, error) {
	c.mu.Lock()
	c.seq++
	c.mu.Unlock()
	var idb [8]byte
	rand.Read(idb[:])
	body, err := json.Marshal(map[string]any{
		"message": map[string]any{
			"id":       hex.EncodeToString(idb[:]),
			"text":     text,
			"event":    "message",
			"operator": map[string]string{"name": c.opts.Operator},
		},
		"contact": map[string]string{"email": contact},
	})
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.opts.OutboundURL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("userliketest: reply: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(userlike.TokenHeader, c.opts.OutboundToken)
	resp, err := c.opts.HTTPClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("userliketest: reply to %s: %w", contact, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode == http.StatusOK {
		e := Entry{Name: c.opts.Operator, Text: text, At: time.Now()}
		c.mu.Lock()
		c.convs[contact] = append(c.convs[contact], e)
		c.mu.Unlock()
		c.print(contact, e)
	}
	return resp.StatusCode, nil
}

// LastContact is the contact of the newest inbound message.
func (c *Center) LastContact() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// Conversation returns a copy of the messages exchanged with contact.
func (c *Center) Conversation(contact string) []Entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Entry(nil), c.convs[contact]...)
}

func writeJSON(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	io.WriteString(w, body+"\n")
}
