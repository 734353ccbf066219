package userlike

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// TokenHeader is the header that carries the auth token in both directions
// of the Custom Channel.
const TokenHeader = "API-SECURITY-TOKEN"

// maxErrorBody is how much of a failed response's body errors keep.
const maxErrorBody = 512

// ClientOptions configures a Client.
type ClientOptions struct {
	// InboundURL is the Inbound URL Userlike generated for the channel.
	InboundURL string
	// Token is the inbound auth token, sent in the API-SECURITY-TOKEN
	// header. It never appears in errors.
	Token string
	// HTTPClient sends the requests; nil means a client with a 30s timeout
	// and its own transport, which keeps up to MaxIdleConnsPerHost
	// connections to the Inbound URL's host open between posts.
	// Redirects are never followed, whatever its CheckRedirect says, so the
	// token is never sent to another URL.
	HTTPClient *http.Client
	// MaxAttempts bounds the attempts of Post; 0 means retry until the
	// context is done.
	MaxAttempts int
	// MinBackoff is the backoff ceiling of the first retry; 0 means 1s.
	MinBackoff time.Duration
	// MaxBackoff caps every wait, Retry-After included; 0 means 5m.
	MaxBackoff time.Duration
	// UserAgent is sent as User-Agent when not empty.
	UserAgent string
	// Sleep waits d or until ctx is done, returning ctx.Err() in that case;
	// nil means a real timer. Tests inject it to record waits.
	Sleep func(ctx context.Context, d time.Duration) error
}

// MaxIdleConnsPerHost is how many idle connections the default client
// keeps to the Inbound URL's host: more than the concurrent posts of a
// channel, so that a burst of posts does not close and redial connections
// (net/http's default keeps 2).
const MaxIdleConnsPerHost = 16

// Client posts inbound messages to a Custom Channel's Inbound URL.
// It is safe for concurrent use.
type Client struct {
	url         string
	token       string
	http        *http.Client
	maxAttempts int
	minBackoff  time.Duration
	maxBackoff  time.Duration
	userAgent   string
	sleep       func(ctx context.Context, d time.Duration) error
}

// writeBufferSize is the default transport's write buffer per
// connection.
const writeBufferSize = 32 << 10

// NewClient returns a Client for opts, filling in defaults.
func NewClient(opts ClientOptions) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = MaxIdleConnsPerHost
	// Headers and a body of up to this size leave in one write: with the
	// default 4 KiB the headers went in one system call and the body
	// (2-20 KB of text, typically) in another.
	tr.WriteBufferSize = writeBufferSize
	hc := &http.Client{Timeout: 30 * time.Second, Transport: tr}
	if opts.HTTPClient != nil {
		copied := *opts.HTTPClient
		hc = &copied
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}
	c := &Client{
		url:         opts.InboundURL,
		token:       opts.Token,
		http:        hc,
		maxAttempts: opts.MaxAttempts,
		minBackoff:  opts.MinBackoff,
		maxBackoff:  opts.MaxBackoff,
		userAgent:   opts.UserAgent,
		sleep:       opts.Sleep,
	}
	if c.minBackoff <= 0 {
		c.minBackoff = time.Second
	}
	if c.maxBackoff <= 0 {
		c.maxBackoff = 5 * time.Minute
	}
	if c.maxBackoff < c.minBackoff {
		c.maxBackoff = c.minBackoff
	}
	if c.sleep == nil {
		c.sleep = sleepTimer
	}
	return c
}

func sleepTimer(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// PermanentError is a response that retrying will not fix: a 4xx other than
// 408, 425 and 429, or another non-2xx status that is not temporary. The
// message should be dead-lettered with it.
type PermanentError struct {
	// Status is the HTTP status code.
	Status int
	// Body is the start (up to 512 bytes) of the response body.
	Body string
}

// Error describes the refusal; the token never appears in it.
func (e *PermanentError) Error() string {
	if e.Status == 0 {
		return "userlike: inbound post impossible: " + e.Body
	}
	return fmt.Sprintf("userlike: inbound post rejected: HTTP %d: %q", e.Status, e.Body)
}

// TemporaryError is a failed attempt worth retrying: status 408, 425, 429
// or 5xx, or a network error (Status 0, Err set).
type TemporaryError struct {
	// Status is the HTTP status code, or 0 for a network error.
	Status int
	// Body is the start (up to 512 bytes) of the response body.
	Body string
	// RetryAfter is the wait the server asked for with Retry-After, capped
	// at MaxBackoff; 0 when it asked for none.
	RetryAfter time.Duration
	// Err is the network error, if any.
	Err error
}

// Error describes the failure; the token never appears in it.
func (e *TemporaryError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("userlike: inbound post failed: %v", e.Err)
	}
	s := fmt.Sprintf("userlike: inbound post failed: HTTP %d: %q", e.Status, e.Body)
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %v)", e.RetryAfter)
	}
	return s
}

// Unwrap returns the network error, if any.
func (e *TemporaryError) Unwrap() error { return e.Err }

// IsPermanent reports whether err is or wraps a *PermanentError.
func IsPermanent(err error) bool {
	var pe *PermanentError
	return errors.As(err, &pe)
}

// Post posts body to the Inbound URL, retrying temporary failures with
// exponential backoff and full jitter (or the server's Retry-After) until
// it succeeds, a permanent error occurs, MaxAttempts is reached or ctx is
// done. It returns nil on any 2xx, a *PermanentError without retrying, or
// the last failure.
func (c *Client) Post(ctx context.Context, body []byte) error {
	for attempt := 1; ; attempt++ {
		err := c.PostOnce(ctx, body)
		if err == nil || IsPermanent(err) {
			return err
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("userlike: inbound post abandoned after %d attempts: %w (last failure: %w)", attempt, ctxErr, err)
		}
		if c.maxAttempts > 0 && attempt >= c.maxAttempts {
			return fmt.Errorf("userlike: inbound post gave up after %d attempts: %w", attempt, err)
		}
		if sleepErr := c.sleep(ctx, c.RetryDelay(attempt, err)); sleepErr != nil {
			return fmt.Errorf("userlike: inbound post abandoned after %d attempts: %w (last failure: %w)", attempt, sleepErr, err)
		}
	}
}

// RetryDelay returns how long to wait after the attempt-th failed attempt
// (counting from 1) that failed with err: the server's Retry-After when err
// is a *TemporaryError carrying one, otherwise a random wait in [0, MinBackoff*2^(attempt-1)), capped at MaxBackoff (full jitter). Queues that
// schedule their own retries use it too.
func (c *Client) RetryDelay(attempt int, err error) time.Duration {
	var te *TemporaryError
	if errors.As(err, &te) && te.RetryAfter > 0 {
		return min(te.RetryAfter, c.maxBackoff)
	}
	ceiling := c.maxBackoff
	if attempt < 1 {
		attempt = 1
	}
	if shift := attempt - 1; shift < 62 && c.minBackoff<<shift>>shift == c.minBackoff {
		ceiling = min(c.minBackoff<<shift, c.maxBackoff)
	}
	return rand.N(ceiling)
}

// PostOnce makes a single attempt to post body to the Inbound URL. It
// returns nil on any 2xx, a *PermanentError when retrying cannot help, and a
// *TemporaryError otherwise, so that a queue can schedule the retry itself
// without blocking other contacts.
func (c *Client) PostOnce(ctx context.Context, body []byte) error {
	// A malformed Inbound URL is permanent: retrying cannot fix it. The URL
	// itself is kept out of the error, as it identifies the channel.
	u, err := url.Parse(c.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return &PermanentError{Body: "the inbound URL is not an absolute http(s) URL"}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return &PermanentError{Body: "cannot build the request for the inbound URL"}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set(TokenHeader, c.token)
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return &TemporaryError{Err: redactedError{msg: c.redact(err.Error()), err: err}}
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
		return nil
	}
	snippet := c.readErrorBody(resp.Body)
	if !isTemporaryStatus(resp.StatusCode) {
		return &PermanentError{Status: resp.StatusCode, Body: snippet}
	}
	return &TemporaryError{
		Status:     resp.StatusCode,
		Body:       snippet,
		RetryAfter: min(parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()), c.maxBackoff),
	}
}

func isTemporaryStatus(code int) bool {
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooEarly, code == http.StatusTooManyRequests:
		return true
	case code >= 500 && code <= 599:
		return true
	}
	return false
}

// readErrorBody returns the first maxErrorBody bytes of an error response
// with the token removed. It reads enough past the limit that a token
// starting inside the kept part is removed whole.
func (c *Client) readErrorBody(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, int64(maxErrorBody+len(c.token))))
	io.Copy(io.Discard, io.LimitReader(r, 64<<10))
	s := c.redact(string(b))
	if len(s) > maxErrorBody {
		s = s[:maxErrorBody]
		for len(s) > 0 && !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}

func (c *Client) redact(s string) string {
	if c.token == "" {
		return s
	}
	return strings.ReplaceAll(s, c.token, "[redacted]")
}

// redactedError carries a network error whose message had the token
// removed, while still unwrapping to the original for errors.Is/As.
type redactedError struct {
	msg string
	err error
}

func (e redactedError) Error() string { return e.msg }
func (e redactedError) Unwrap() error { return e.err }

// parseRetryAfter reads a Retry-After value: delay seconds or an HTTP date.
// It returns 0 for an empty, malformed or past value.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64((1<<63-1)/time.Second) {
			return 1<<63 - 1
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
