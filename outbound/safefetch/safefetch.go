// Package safefetch downloads operator media URLs without letting a URL
// reach the machine's own or internal network (SSRF).
//
// A Fetcher only speaks http and https, refuses URLs with credentials,
// resolves the host itself and refuses it if any of its addresses is
// loopback, private, link-local (including cloud metadata at
// 169.254.169.254), CGNAT, multicast, unspecified or otherwise reserved;
// then it dials exactly the address it checked, and checks again at the
// socket, so DNS rebinding cannot swap in another address. Redirects are
// followed at most five times, each through the same checks. The body is
// cut off at a size limit, and the whole fetch at a time limit.
package safefetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Defaults for Options.
const (
	// DefaultTimeout is the default limit on a whole fetch.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxSize is the default body size limit, 25 MiB.
	DefaultMaxSize = 25 << 20
	// MaxRedirects is how many redirects a fetch follows.
	MaxRedirects = 5
)

// Resolver resolves host names; *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Options configure a Fetcher.
type Options struct {
	// Timeout limits a whole fetch, body included; zero means
	// DefaultTimeout.
	Timeout time.Duration
	// MaxSize is the largest body accepted, in bytes; zero means
	// DefaultMaxSize.
	MaxSize int64
	// AllowCIDRs are let through even if they are private or loopback: for
	// tests and for setups where the media server is internal.
	AllowCIDRs []netip.Prefix
	// Resolver resolves host names; nil means net.DefaultResolver.
	Resolver Resolver
	// UserAgent is sent with each request; empty means "mailgate".
	UserAgent string
}

// Result describes a fetched body.
type Result struct {
	// ContentType is the media type the server declared, without
	// parameters other than charset; application/octet-stream if it gave
	// none or an invalid one.
	ContentType string
	// Filename is from Content-Disposition, else the last segment of the
	// URL path; it may be empty.
	Filename string
	// Size is the number of bytes written to the destination.
	Size int64
}

// ErrTooLarge is returned when a body exceeds Options.MaxSize.
var ErrTooLarge = errors.New("safefetch: response larger than the size limit")

// RefusedError says why a URL or an address was refused.
type RefusedError struct {
	// Target is what was refused: an address, or a URL without its query.
	Target string
	// Reason is the rule that refused it ("loopback address").
	Reason string
}

// Error implements error.
func (e *RefusedError) Error() string {
	return "safefetch: refusing " + e.Target + ": " + e.Reason
}

// Fetcher fetches URLs under the rules of its Options. It is safe for
// concurrent use.
type Fetcher struct {
	opts   Options
	client *http.Client
}

// New returns a Fetcher.
func New(opts Options) *Fetcher {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxSize <= 0 {
		opts.MaxSize = DefaultMaxSize
	}
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "mailgate"
	}
	opts.AllowCIDRs = append([]netip.Prefix(nil), opts.AllowCIDRs...)
	f := &Fetcher{opts: opts}
	transport := &http.Transport{
		Proxy:                  nil, // a proxy would dial for us, unchecked
		DialContext:            f.dialContext,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    opts.Timeout,
		ResponseHeaderTimeout:  opts.Timeout,
		MaxResponseHeaderBytes: 64 << 10,
		MaxIdleConns:           10,
		IdleConnTimeout:        90 * time.Second,
	}
	f.client = &http.Client{
		Transport:     transport,
		CheckRedirect: f.checkRedirect,
	}
	return f
}

// Fetch GETs rawURL and copies the body to dst. On error, dst may hold a
// part of the body, never more than MaxSize bytes.
func (f *Fetcher) Fetch(ctx context.Context, rawURL string, dst io.Writer) (Result, error) {
	u, err := f.checkURL(rawURL)
	if err != nil {
		return Result{}, err
	}
	shown := redact(u)
	ctx, cancel := context.WithTimeout(ctx, f.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Result{}, fmt.Errorf("safefetch: GET %s: %w", shown, err)
	}
	req.Header.Set("User-Agent", f.opts.UserAgent)
	req.Header.Set("Accept", "*/*")
	resp, err := f.client.Do(req)
	if err != nil {
		var refused *RefusedError
		if errors.As(err, &refused) {
			return Result{}, refused
		}
		return Result{}, fmt.Errorf("safefetch: GET %s: %w", shown, unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Result{}, fmt.Errorf("safefetch: GET %s: status %s", shown, resp.Status)
	}
	if resp.ContentLength > f.opts.MaxSize {
		return Result{}, fmt.Errorf("%w: GET %s: %d bytes, limit %d", ErrTooLarge, shown, resp.ContentLength, f.opts.MaxSize)
	}
	res := Result{
		ContentType: contentType(resp.Header.Get("Content-Type")),
		Filename:    filename(resp.Header.Get("Content-Disposition"), u, resp.Request.URL),
	}
	res.Size, err = io.CopyN(dst, resp.Body, f.opts.MaxSize)
	if err == io.EOF {
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("safefetch: GET %s: reading body: %w", shown, err)
	}
	// MaxSize bytes copied: one more means the body is too large.
	var probe [1]byte
	if n, _ := io.ReadFull(resp.Body, probe[:]); n > 0 {
		return res, fmt.Errorf("%w: GET %s: limit %d bytes", ErrTooLarge, shown, f.opts.MaxSize)
	}
	return res, nil
}

// checkURL parses rawURL and applies the rules that need no network.
func (f *Fetcher) checkURL(rawURL string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(rawURL))
	if err != nil {
		// url.Parse errors quote the input, which may hold secrets.
		return nil, &RefusedError{Target: "URL", Reason: "not a valid URL"}
	}
	return u, f.checkParsedURL(u)
}

// checkParsedURL refuses URLs that are not plain http(s) to a host, and
// hosts that are IP literals in a refused range.
func (f *Fetcher) checkParsedURL(u *url.URL) error {
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return &RefusedError{Target: redact(u), Reason: fmt.Sprintf("scheme %q is not http or https", u.Scheme)}
	}
	if u.User != nil {
		u2 := *u
		u2.User = nil
		return &RefusedError{Target: redact(&u2), Reason: "URL contains credentials"}
	}
	host := u.Hostname()
	if host == "" {
		return &RefusedError{Target: redact(u), Reason: "no host"}
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if reason := f.refuse(ip); reason != "" {
			return &RefusedError{Target: ip.String(), Reason: reason}
		}
	}
	return nil
}

// checkRedirect applies the URL rules to each redirect and limits their
// number; the addresses are checked when the redirect is dialed.
func (f *Fetcher) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > MaxRedirects {
		return fmt.Errorf("safefetch: more than %d redirects", MaxRedirects)
	}
	return f.checkParsedURL(req.URL)
}

// dialContext resolves addr's host, refuses it if any address is refused,
// and dials the checked addresses only.
func (f *Fetcher) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("safefetch: dial %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("safefetch: dial %q: bad port", addr)
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		ips, err = f.opts.Resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, fmt.Errorf("safefetch: resolve %q: %w", host, err)
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("safefetch: resolve %q: no addresses", host)
		}
	}
	for _, ip := range ips {
		if reason := f.refuse(ip); reason != "" {
			if ip.String() != host {
				reason += " (" + host + ")"
			}
			return nil, &RefusedError{Target: ip.String(), Reason: reason}
		}
	}
	d := net.Dialer{Control: f.control}
	var firstErr error
	for _, ip := range ips {
		conn, err := d.DialContext(ctx, network, netip.AddrPortFrom(ip.Unmap(), uint16(port)).String())
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		var refused *RefusedError
		if ctx.Err() != nil || errors.As(err, &refused) {
			break
		}
	}
	return nil, firstErr
}

// control checks the address a socket is about to connect to, whatever
// produced it.
func (f *Fetcher) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &RefusedError{Target: address, Reason: "not an IP address"}
	}
	if reason := f.refuse(ap.Addr()); reason != "" {
		return &RefusedError{Target: ap.Addr().String(), Reason: reason}
	}
	return nil
}

// Special-purpose ranges that net/netip has no predicate for.
var (
	thisNetwork   = netip.MustParsePrefix("0.0.0.0/8")
	sharedCGNAT   = netip.MustParsePrefix("100.64.0.0/10")
	ietfProtocol  = netip.MustParsePrefix("192.0.0.0/24")
	benchmarking  = netip.MustParsePrefix("198.18.0.0/15")
	reservedV4    = netip.MustParsePrefix("240.0.0.0/4") // includes 255.255.255.255
	ipv4Compat    = netip.MustParsePrefix("::/96")
	nat64         = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local    = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour     = netip.MustParsePrefix("2002::/16")
	teredo        = netip.MustParsePrefix("2001::/32")
	siteLocalV6   = netip.MustParsePrefix("fec0::/10")
	discardOnlyV6 = netip.MustParsePrefix("100::/64")
)

// refuse returns why ip may not be fetched from, or "" if it may.
func (f *Fetcher) refuse(ip netip.Addr) string {
	ip = ip.WithZone("")
	for _, p := range f.opts.AllowCIDRs {
		if p.Contains(ip) || p.Contains(ip.Unmap()) {
			return ""
		}
	}
	return refuseAddr(ip)
}

// refuseAddr applies the address rules without the allow list.
func refuseAddr(ip netip.Addr) string {
	if !ip.IsValid() {
		return "invalid address"
	}
	if ip.Is4In6() {
		if r := refuseAddr(ip.Unmap()); r != "" {
			return r + " (IPv4-mapped)"
		}
		return ""
	}
	switch {
	case ip.IsUnspecified():
		return "unspecified address"
	case ip.IsLoopback():
		return "loopback address"
	case ip.IsPrivate():
		return "private address"
	case ip.IsLinkLocalUnicast():
		return "link-local address"
	case ip.IsMulticast(), ip.IsLinkLocalMulticast(), ip.IsInterfaceLocalMulticast():
		return "multicast address"
	}
	if ip.Is4() {
		switch {
		case thisNetwork.Contains(ip):
			return "\"this network\" address (0.0.0.0/8)"
		case sharedCGNAT.Contains(ip):
			return "shared (CGNAT) address"
		case ietfProtocol.Contains(ip), benchmarking.Contains(ip), reservedV4.Contains(ip):
			return "reserved address"
		}
		return ""
	}
	switch {
	case ipv4Compat.Contains(ip):
		return "IPv4-compatible address"
	case siteLocalV6.Contains(ip), discardOnlyV6.Contains(ip), nat64Local.Contains(ip):
		return "reserved address"
	case nat64.Contains(ip):
		b := ip.As16()
		if r := refuseAddr(netip.AddrFrom4([4]byte(b[12:16]))); r != "" {
			return r + " (NAT64)"
		}
	case sixToFour.Contains(ip):
		b := ip.As16()
		if r := refuseAddr(netip.AddrFrom4([4]byte(b[2:6]))); r != "" {
			return r + " (6to4)"
		}
	case teredo.Contains(ip):
		b := ip.As16()
		var v4 [4]byte
		for i := range v4 {
			v4[i] = ^b[12+i] // the client address is stored inverted
		}
		if r := refuseAddr(netip.AddrFrom4(v4)); r != "" {
			return r + " (Teredo)"
		}
	}
	return ""
}

// unwrapURLError drops the *url.Error layer, whose message repeats the full
// URL (query included).
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// redact shows u without credentials, query or fragment, which may carry
// signatures or tokens.
func redact(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	s := r.String()
	if u.RawQuery != "" {
		s += "?…"
	}
	return s
}

// contentType normalizes a Content-Type header value.
func contentType(v string) string {
	const fallback = "application/octet-stream"
	t, params, err := mime.ParseMediaType(v)
	if err != nil || !strings.Contains(t, "/") {
		return fallback
	}
	if cs := params["charset"]; cs != "" && strings.HasPrefix(t, "text/") {
		if s := mime.FormatMediaType(t, map[string]string{"charset": cs}); s != "" {
			return s
		}
	}
	if s := mime.FormatMediaType(t, nil); s != "" {
		return s
	}
	return fallback
}

// filename picks a file name from Content-Disposition, else from the path
// of the requested URL, else from the final URL after redirects.
func filename(disposition string, requested, final *url.URL) string {
	if _, params, err := mime.ParseMediaType(disposition); err == nil {
		if name := cleanName(params["filename"]); name != "" {
			return name
		}
	}
	for _, u := range []*url.URL{requested, final} {
		if u == nil {
			continue
		}
		if name := cleanName(path.Base(u.Path)); name != "" {
			return name
		}
	}
	return ""
}

// cleanName keeps the last path element of name, without control
// characters.
func cleanName(name string) string {
	name = strings.ReplaceAll(name, "\\", "/")
	name = path.Base(name)
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, strings.ToValidUTF8(name, ""))
	name = strings.TrimSpace(name)
	if name == "." || name == "/" || name == ".." {
		return ""
	}
	return name
}
