package safefetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// mapResolver resolves from a fixed table.
type mapResolver map[string][]netip.Addr

func (m mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := m[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

// serveOn starts an HTTP server on ip (a loopback address).
func serveOn(t *testing.T, ip string, h http.Handler) (*httptest.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Skipf("cannot listen on %s: %v", ip, err)
	}
	srv := httptest.NewUnstartedServer(h)
	_ = srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return srv, port
}

// allowed is the only address tests may fetch from.
var allowed = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}

func TestRefuseAddr(t *testing.T) {
	tests := []struct {
		ip, reason string
	}{
		{"127.0.0.1", "loopback address"},
		{"127.255.0.9", "loopback address"},
		{"::1", "loopback address"},
		{"10.0.0.1", "private address"},
		{"172.16.5.4", "private address"},
		{"192.168.1.1", "private address"},
		{"fd00::1", "private address"},
		{"169.254.169.254", "link-local address"},
		{"fe80::1", "link-local address"},
		{"0.0.0.0", "unspecified address"},
		{"::", "unspecified address"},
		{"0.1.2.3", `"this network" address (0.0.0.0/8)`},
		{"100.64.0.1", "shared (CGNAT) address"},
		{"100.127.255.254", "shared (CGNAT) address"},
		{"224.0.0.1", "multicast address"},
		{"ff02::1", "multicast address"},
		{"255.255.255.255", "reserved address"},
		{"240.0.0.1", "reserved address"},
		{"198.18.0.1", "reserved address"},
		{"::ffff:127.0.0.1", "loopback address (IPv4-mapped)"},
		{"::ffff:169.254.169.254", "link-local address (IPv4-mapped)"},
		{"::ffff:10.1.2.3", "private address (IPv4-mapped)"},
		{"::127.0.0.1", "IPv4-compatible address"},
		{"64:ff9b::a9fe:a9fe", "link-local address (NAT64)"},
		{"2002:7f00:1::1", "loopback address (6to4)"},
		{"2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback address (Teredo)"},
		{"fec0::1", "reserved address"},
		{"8.8.8.8", ""},
		{"93.184.216.34", ""},
		{"100.128.0.1", ""},
		{"::ffff:8.8.8.8", ""},
		{"2606:4700:4700::1111", ""},
		{"64:ff9b::808:808", ""},
		{"2002:808:808::1", ""},
	}
	for _, tt := range tests {
		if got := refuseAddr(netip.MustParseAddr(tt.ip)); got != tt.reason {
			t.Errorf("refuseAddr(%s) = %q, want %q", tt.ip, got, tt.reason)
		}
	}
	f := New(Options{AllowCIDRs: allowed})
	if r := f.refuse(netip.MustParseAddr("127.0.0.2")); r != "" {
		t.Errorf("allowed address refused: %s", r)
	}
	if r := f.refuse(netip.MustParseAddr("::ffff:127.0.0.2")); r != "" {
		t.Errorf("allowed address (mapped) refused: %s", r)
	}
	if r := f.refuse(netip.MustParseAddr("127.0.0.1")); r == "" {
		t.Errorf("127.0.0.1 allowed by 127.0.0.2/32")
	}
}

// noDNS fails the test if anything is resolved.
type noDNS struct{ t *testing.T }

func (n noDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	n.t.Errorf("unexpected lookup of %q", host)
	return nil, errors.New("no DNS in this test")
}

func TestFetchRefusesAddresses(t *testing.T) {
	f := New(Options{
		Timeout: 5 * time.Second,
		Resolver: mapResolver{
			"loopback.test": addrs("127.0.0.1"),
			"mixed.test":    addrs("93.184.216.34", "10.0.0.1"),
			"metadata.test": addrs("169.254.169.254"),
			"v6.test":       addrs("::1"),
		},
	})
	tests := []struct {
		url, want string
	}{
		{"http://127.0.0.1/", "safefetch: refusing 127.0.0.1: loopback address"},
		{"http://[::1]:8080/x", "safefetch: refusing ::1: loopback address"},
		{"http://169.254.169.254/latest/meta-data/", "safefetch: refusing 169.254.169.254: link-local address"},
		{"http://10.0.0.1/", "safefetch: refusing 10.0.0.1: private address"},
		{"https://192.168.1.1/admin", "safefetch: refusing 192.168.1.1: private address"},
		{"http://[::ffff:127.0.0.1]/", "safefetch: refusing ::ffff:127.0.0.1: loopback address (IPv4-mapped)"},
		{"http://0.0.0.0:80/", "safefetch: refusing 0.0.0.0: unspecified address"},
		{"http://[fe80::1%25lo]/", "safefetch: refusing fe80::1%lo: link-local address"},
		{"http://loopback.test/", "safefetch: refusing 127.0.0.1: loopback address (loopback.test)"},
		{"http://mixed.test/", "safefetch: refusing 10.0.0.1: private address (mixed.test)"},
		{"http://metadata.test/", "safefetch: refusing 169.254.169.254: link-local address (metadata.test)"},
		{"https://v6.test/", "safefetch: refusing ::1: loopback address (v6.test)"},
	}
	for _, tt := range tests {
		var dst bytes.Buffer
		_, err := f.Fetch(context.Background(), tt.url, &dst)
		var refused *RefusedError
		if !errors.As(err, &refused) || err.Error() != tt.want {
			t.Errorf("Fetch(%s) = %v, want %q", tt.url, err, tt.want)
		}
	}
}

func TestFetchRefusesURLs(t *testing.T) {
	f := New(Options{Resolver: noDNS{t}, AllowCIDRs: allowed})
	tests := []struct {
		url, reason string
	}{
		{"ftp://example.com/file", `scheme "ftp" is not http or https`},
		{"file:///etc/passwd", `scheme "file" is not http or https`},
		{"javascript:alert(1)", `scheme "javascript" is not http or https`},
		{"gopher://127.0.0.2:70/", `scheme "gopher" is not http or https`},
		{"//example.com/x", `scheme "" is not http or https`},
		{"http:///x", "no host"},
		{"http://user:hunter2@127.0.0.2/", "URL contains credentials"},
		{"http://%zz/", "not a valid URL"},
	}
	for _, tt := range tests {
		_, err := f.Fetch(context.Background(), tt.url, &bytes.Buffer{})
		var refused *RefusedError
		if !errors.As(err, &refused) || refused.Reason != tt.reason {
			t.Errorf("Fetch(%s) = %v, want reason %q", tt.url, err, tt.reason)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

func TestFetchAllowed(t *testing.T) {
	var host atomic.Value
	_, port := serveOn(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host.Store(r.Host)
		switch r.URL.Path {
		case "/files/report%20final.pdf", "/files/report final.pdf":
			w.Header().Set("Content-Type", "application/PDF; foo=bar")
			fmt.Fprint(w, "%PDF-1.4 test")
		case "/download":
			w.Header().Set("Content-Type", "text/plain; charset=iso-8859-1")
			w.Header().Set("Content-Disposition", `attachment; filename*=UTF-8''R%C3%A9sum%C3%A9%20..%2F..%2Fx.txt`)
			fmt.Fprint(w, "hello")
		case "/":
			fmt.Fprint(w, "root")
		default:
			http.NotFound(w, r)
		}
	}))
	f := New(Options{AllowCIDRs: allowed, Resolver: mapResolver{"media.test": addrs("127.0.0.2")}})

	tests := []struct {
		url    string
		want   Result
		body   string
		host   string
		errSub string
	}{
		{url: "http://127.0.0.2:" + port + "/files/report%20final.pdf", want: Result{"application/pdf", "report final.pdf", 13}, body: "%PDF-1.4 test"},
		{url: "http://media.test:" + port + "/download?sig=abc", want: Result{"text/plain; charset=iso-8859-1", "x.txt", 5}, body: "hello", host: "media.test:" + port},
		{url: "HTTP://127.0.0.2:" + port + "/", want: Result{"text/plain; charset=utf-8", "", 4}, body: "root"},
		{url: "http://media.test:" + port + "/missing?sig=SECRET", errSub: "status 404"},
	}
	for _, tt := range tests {
		var dst bytes.Buffer
		got, err := f.Fetch(context.Background(), tt.url, &dst)
		if tt.errSub != "" {
			if err == nil || !strings.Contains(err.Error(), tt.errSub) || strings.Contains(err.Error(), "SECRET") {
				t.Errorf("Fetch(%s) = %v, want error with %q and no query", tt.url, err, tt.errSub)
			}
			continue
		}
		if err != nil {
			t.Errorf("Fetch(%s): %v", tt.url, err)
			continue
		}
		if got != tt.want || dst.String() != tt.body {
			t.Errorf("Fetch(%s) = %+v %q, want %+v %q", tt.url, got, dst.String(), tt.want, tt.body)
		}
		if tt.host != "" && host.Load() != tt.host {
			t.Errorf("Host header = %v, want %s", host.Load(), tt.host)
		}
	}
}

func TestFetchRedirects(t *testing.T) {
	var internalHits atomic.Int32
	_, internalPort := serveOn(t, "127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		internalHits.Add(1)
		fmt.Fprint(w, "internal secret")
	}))
	_, port := serveOn(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-loopback":
			http.Redirect(w, r, "http://127.0.0.1:"+internalPort+"/", http.StatusFound)
		case "/to-name":
			http.Redirect(w, r, "http://internal.test:"+internalPort+"/", http.StatusMovedPermanently)
		case "/to-metadata":
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
		case "/to-file":
			http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/hop":
			http.Redirect(w, r, "/final.txt", http.StatusSeeOther)
		case "/final.txt":
			fmt.Fprint(w, "ok")
		}
	}))
	f := New(Options{
		Timeout:    5 * time.Second,
		AllowCIDRs: allowed,
		Resolver:   mapResolver{"internal.test": addrs("127.0.0.1")},
	})
	base := "http://127.0.0.2:" + port
	tests := []struct {
		path, errSub string
	}{
		{"/to-loopback", "safefetch: refusing 127.0.0.1: loopback address"},
		{"/to-name", "safefetch: refusing 127.0.0.1: loopback address (internal.test)"},
		{"/to-metadata", "safefetch: refusing 169.254.169.254: link-local address"},
		{"/to-file", `scheme "file" is not http or https`},
		{"/loop", "more than 5 redirects"},
	}
	for _, tt := range tests {
		_, err := f.Fetch(context.Background(), base+tt.path, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tt.errSub) {
			t.Errorf("Fetch(%s) = %v, want %q", tt.path, err, tt.errSub)
		}
	}
	if n := internalHits.Load(); n != 0 {
		t.Errorf("the loopback server was reached %d times", n)
	}

	var dst bytes.Buffer
	res, err := f.Fetch(context.Background(), base+"/hop", &dst)
	if err != nil || dst.String() != "ok" || res.Filename != "hop" {
		t.Errorf("allowed redirect: %+v %q %v", res, dst.String(), err)
	}
}

func TestFetchSizeLimit(t *testing.T) {
	const limit = 1000
	_, port := serveOn(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/declared":
			w.Header().Set("Content-Length", "2000")
			_, _ = w.Write(bytes.Repeat([]byte("a"), 2000))
		case "/chunked":
			for range 20 {
				_, _ = w.Write(bytes.Repeat([]byte("b"), 100))
				w.(http.Flusher).Flush()
			}
		case "/exact":
			_, _ = w.Write(bytes.Repeat([]byte("c"), limit))
		}
	}))
	f := New(Options{MaxSize: limit, AllowCIDRs: allowed})
	base := "http://127.0.0.2:" + port
	for _, p := range []string{"/declared", "/chunked"} {
		var dst bytes.Buffer
		_, err := f.Fetch(context.Background(), base+p, &dst)
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: err = %v, want ErrTooLarge", p, err)
		}
		if dst.Len() > limit {
			t.Errorf("%s: %d bytes written past the limit", p, dst.Len())
		}
	}
	var dst bytes.Buffer
	res, err := f.Fetch(context.Background(), base+"/exact", &dst)
	if err != nil || res.Size != limit || dst.Len() != limit {
		t.Errorf("/exact: %+v, %d bytes, %v", res, dst.Len(), err)
	}
}

func TestFetchTimeout(t *testing.T) {
	release := make(chan struct{})
	_, port := serveOn(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer close(release)
	f := New(Options{Timeout: 200 * time.Millisecond, AllowCIDRs: allowed})
	_, err := f.Fetch(context.Background(), "http://127.0.0.2:"+port+"/slow", &bytes.Buffer{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want a deadline error", err)
	}
}

func TestControlChecksDialedAddress(t *testing.T) {
	f := New(Options{AllowCIDRs: allowed})
	for addr, ok := range map[string]bool{
		"127.0.0.1:80":       false,
		"[::1]:443":          false,
		"10.1.2.3:80":        false,
		"127.0.0.2:8080":     true,
		"93.184.216.34:443":  true,
		"not-an-address:443": false,
	} {
		if err := f.control("tcp", addr, nil); (err == nil) != ok {
			t.Errorf("control(%s) = %v, want ok=%v", addr, err, ok)
		}
	}
}

func TestFilenameAndType(t *testing.T) {
	for in, want := range map[string]string{
		"":                         "application/octet-stream",
		"garbage":                  "application/octet-stream",
		"IMAGE/PNG":                "image/png",
		"text/html; charset=UTF-8": "text/html; charset=UTF-8",
		"image/png; name=x":        "image/png",
	} {
		if got := contentType(in); got != want {
			t.Errorf("contentType(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		`attachment; filename="a.pdf"`:            "a.pdf",
		`attachment; filename="..\\..\\b.exe"`:    "b.exe",
		`attachment; filename="x` + "\x01" + `y"`: "xy",
		`inline`: "",
	} {
		if got := filename(in, nil, nil); got != want {
			t.Errorf("filename(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzRefuseAddr(f *testing.F) {
	f.Add([]byte{127, 0, 0, 1})
	f.Add([]byte{169, 254, 169, 254})
	f.Add([]byte{8, 8, 8, 8})
	f.Add(netip.MustParseAddr("64:ff9b::a00:1").AsSlice())
	f.Fuzz(func(t *testing.T, b []byte) {
		ip, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		reason := refuseAddr(ip)
		if ip.Is4() {
			// Every embedding of a refused IPv4 address is refused too.
			mapped := netip.AddrFrom16(ip.As16())
			if (refuseAddr(mapped) == "") != (reason == "") {
				t.Fatalf("%s refused %q but mapped %s refused %q", ip, reason, mapped, refuseAddr(mapped))
			}
			v4 := ip.As4()
			nat := netip.AddrFrom16([16]byte{0, 0x64, 0xff, 0x9b, 10: 0, 11: 0, 12: v4[0], 13: v4[1], 14: v4[2], 15: v4[3]})
			if reason != "" && refuseAddr(nat) == "" {
				t.Fatalf("%s refused but NAT64 %s allowed", ip, nat)
			}
		}
		// The dial-time check agrees with the address check.
		fe := &Fetcher{}
		err := fe.control("tcp", netip.AddrPortFrom(ip, 443).String(), nil)
		if (err == nil) != (reason == "") {
			t.Fatalf("control(%s) = %v but refuseAddr = %q", ip, err, reason)
		}
	})
}
