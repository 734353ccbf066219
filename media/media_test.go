package media

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mailgate/internal/fakeclock"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// memIndex is an in-memory Index.
type memIndex struct {
	mu   sync.Mutex
	recs map[string]Record
}

func newMemIndex() *memIndex { return &memIndex{recs: make(map[string]Record)} }

func (m *memIndex) PutMedia(ctx context.Context, r *Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.recs[r.ID]; ok {
		return fmt.Errorf("duplicate id %q", r.ID)
	}
	m.recs[r.ID] = *r
	return nil
}

func (m *memIndex) Media(ctx context.Context, id string) (*Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.recs[id]
	if !ok {
		return nil, fmt.Errorf("media %q: %w", id, ErrNotFound)
	}
	return &r, nil
}

func (m *memIndex) ExpiredMedia(ctx context.Context, before time.Time) ([]*Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Record
	for _, r := range m.recs {
		if r.CreatedAt.Before(before) {
			out = append(out, &r)
		}
	}
	return out, nil
}

func (m *memIndex) DeleteMedia(ctx context.Context, ids []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		delete(m.recs, id)
	}
	return nil
}

func (m *memIndex) MediaRefs(ctx context.Context, sum string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, r := range m.recs {
		if r.SHA256 == sum {
			n++
		}
	}
	return n, nil
}

func (m *memIndex) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.recs)
}

type fixture struct {
	lib   *Library
	index *memIndex
	clock *fakeclock.Clock
	dir   string
}

var testKey = bytes.Repeat([]byte("k"), 32)

func newFixture(t testing.TB, modify func(*Options)) *fixture {
	t.Helper()
	fx := &fixture{
		index: newMemIndex(),
		clock: fakeclock.New(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)),
		dir:   filepath.Join(t.TempDir(), "media"),
	}
	opts := Options{
		Dir:       fx.dir,
		Key:       testKey,
		PublicURL: "https://gw.example.com",
		Index:     fx.index,
		Now:       fx.clock.Now,
	}
	if modify != nil {
		modify(&opts)
	}
	lib, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	fx.lib = lib
	return fx
}

func (fx *fixture) put(t testing.TB, meta PutMeta, content []byte) *Record {
	t.Helper()
	rec, err := fx.lib.Put(context.Background(), meta, bytes.NewReader(content))
	if err != nil {
		t.Fatalf("Put(%+v): %v", meta, err)
	}
	return rec
}

// do sends a request for target (an absolute URL or a path with query)
// straight to the handler.
func (fx *fixture) do(t testing.TB, method, target string, hdr http.Header) *httptest.ResponseRecorder {
	t.Helper()
	if u, err := url.Parse(target); err == nil && u.IsAbs() {
		target = u.RequestURI()
	}
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	w := httptest.NewRecorder()
	fx.lib.ServeHTTP(w, req)
	return w
}

// contentFiles lists the content-addressed files under dir (not tmp).
func contentFiles(t testing.TB, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p == filepath.Join(dir, "tmp") {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func tempFiles(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestPutURLGetRoundtrip(t *testing.T) {
	fx := newFixture(t, nil)
	content := []byte(strings.Repeat("Hello, Userlike!\n", 100))
	rec := fx.put(t, PutMeta{Filename: "notes.txt", ContentType: "text/plain", Channel: "support", LedgerID: 42}, content)

	if !validID(rec.ID) {
		t.Errorf("ID %q is not a valid id", rec.ID)
	}
	if rec.SHA256 != sha(content) || rec.Size != int64(len(content)) {
		t.Errorf("record sha/size = %s/%d, want %s/%d", rec.SHA256, rec.Size, sha(content), len(content))
	}
	if rec.Channel != "support" || rec.LedgerID != 42 || rec.Filename != "notes.txt" || !rec.CreatedAt.Equal(fx.clock.Now()) {
		t.Errorf("record metadata = %+v", rec)
	}
	if rec.ContentType != "text/plain; charset=utf-8" {
		t.Errorf("ContentType = %q", rec.ContentType)
	}
	if got, err := fx.index.Media(context.Background(), rec.ID); err != nil || *got != *rec {
		t.Errorf("index has %+v, %v; want %+v", got, err, rec)
	}

	u := fx.lib.URL(rec)
	wantPrefix := "https://gw.example.com/media/" + rec.ID + "/notes.txt?exp="
	if !strings.HasPrefix(u, wantPrefix) {
		t.Fatalf("URL = %q, want prefix %q", u, wantPrefix)
	}
	pu, _ := url.Parse(u)
	if exp := pu.Query().Get("exp"); exp != fmt.Sprint(fx.clock.Now().Add(DefaultURLTTL).Unix()) {
		t.Errorf("exp = %s", exp)
	}

	w := fx.do(t, http.MethodGet, u, nil)
	if w.Code != http.StatusOK {
		t.Fatalf("GET status %d, body %q", w.Code, w.Body)
	}
	if got := sha(w.Body.Bytes()); got != sha(content) {
		t.Errorf("download sha256 %s, want %s", got, sha(content))
	}
	wantHdr := map[string]string{
		"Content-Type":            "text/plain; charset=utf-8",
		"Content-Length":          fmt.Sprint(len(content)),
		"Content-Disposition":     "inline; filename=notes.txt",
		"X-Content-Type-Options":  "nosniff",
		"Cache-Control":           fmt.Sprintf("private, max-age=%d", int(DefaultURLTTL.Seconds())),
		"Content-Security-Policy": "sandbox",
		"Last-Modified":           fx.clock.Now().Format(http.TimeFormat),
	}
	for k, v := range wantHdr {
		if got := w.Header().Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
}

func TestServeOverLoopbackWithPrefix(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mount func(*http.ServeMux, http.Handler)
	}{
		{"pattern", func(m *http.ServeMux, h http.Handler) { m.Handle("/gw/media/", h) }},
		{"strip-prefix", func(m *http.ServeMux, h http.Handler) { m.Handle("/gw/media/", http.StripPrefix("/gw", h)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lib *Library
			mux := http.NewServeMux()
			tc.mount(mux, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { lib.ServeHTTP(w, r) }))
			srv := httptest.NewServer(mux)
			defer srv.Close()
			fx := newFixture(t, func(o *Options) { o.PublicURL = srv.URL + "/gw/" })
			lib = fx.lib

			content := []byte("\x89PNG\r\n\x1a\n fake png body")
			rec := fx.put(t, PutMeta{Filename: "Bild 1 (2).png", ContentType: "image/png"}, content)
			u := lib.URL(rec)
			if !strings.HasPrefix(u, srv.URL+"/gw/media/"+rec.ID+"/Bild%201%20%282%29.png?") {
				t.Fatalf("URL = %q", u)
			}
			resp, err := srv.Client().Get(u)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !bytes.Equal(body, content) {
				t.Fatalf("GET %s: %d %q", u, resp.StatusCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "image/png" {
				t.Errorf("Content-Type = %q", ct)
			}
		})
	}
}

func TestDedup(t *testing.T) {
	fx := newFixture(t, nil)
	content := []byte("%PDF-1.4 same bytes twice")
	a := fx.put(t, PutMeta{Filename: "a.pdf", ContentType: "application/pdf"}, content)
	b := fx.put(t, PutMeta{Filename: "b.pdf", ContentType: "application/pdf"}, content)
	if a.ID == b.ID {
		t.Fatalf("both Puts got id %q", a.ID)
	}
	if a.SHA256 != b.SHA256 {
		t.Fatalf("sha256 differs: %s %s", a.SHA256, b.SHA256)
	}
	files := contentFiles(t, fx.dir)
	want := filepath.Join(fx.dir, a.SHA256[:2], a.SHA256)
	if len(files) != 1 || files[0] != want {
		t.Errorf("files = %v, want [%s]", files, want)
	}
	if tmp := tempFiles(t, fx.dir); len(tmp) != 0 {
		t.Errorf("temp files left: %v", tmp)
	}
	for _, r := range []*Record{a, b} {
		w := fx.do(t, http.MethodGet, fx.lib.URL(r), nil)
		if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), content) {
			t.Errorf("GET %s: %d", r.ID, w.Code)
		}
		if cd := w.Header().Get("Content-Disposition"); cd != "inline; filename="+r.Filename {
			t.Errorf("Content-Disposition = %q", cd)
		}
	}
}

func TestConcurrentPutSameContent(t *testing.T) {
	fx := newFixture(t, nil)
	content := bytes.Repeat([]byte("concurrent "), 5000)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := fx.lib.Put(context.Background(), PutMeta{Filename: "c.txt"}, bytes.NewReader(content))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := fx.index.len(); n != 8 {
		t.Errorf("%d records, want 8", n)
	}
	if files := contentFiles(t, fx.dir); len(files) != 1 {
		t.Errorf("files = %v, want one", files)
	}
	if tmp := tempFiles(t, fx.dir); len(tmp) != 0 {
		t.Errorf("temp files left: %v", tmp)
	}
}

func TestFileModes(t *testing.T) {
	fx := newFixture(t, nil)
	rec := fx.put(t, PutMeta{Filename: "x.bin"}, []byte{1, 2, 3})
	for p, want := range map[string]fs.FileMode{
		fx.dir:                                0o700 | fs.ModeDir,
		filepath.Join(fx.dir, "tmp"):          0o700 | fs.ModeDir,
		filepath.Join(fx.dir, rec.SHA256[:2]): 0o700 | fs.ModeDir,
		filepath.Join(fx.dir, rec.SHA256[:2], rec.SHA256): 0o600,
	} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
	}
}

func TestPutTooLarge(t *testing.T) {
	fx := newFixture(t, func(o *Options) { o.MaxSize = 1000 })
	_, err := fx.lib.Put(context.Background(), PutMeta{Filename: "big"}, bytes.NewReader(make([]byte, 1001)))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Put 1001 bytes: err = %v, want ErrTooLarge", err)
	}
	if tmp := tempFiles(t, fx.dir); len(tmp) != 0 {
		t.Errorf("temp files left: %v", tmp)
	}
	if files := contentFiles(t, fx.dir); len(files) != 0 {
		t.Errorf("files stored: %v", files)
	}
	if n := fx.index.len(); n != 0 {
		t.Errorf("%d records after failed Put", n)
	}
	if rec := fx.put(t, PutMeta{Filename: "exact"}, make([]byte, 1000)); rec.Size != 1000 {
		t.Errorf("size %d", rec.Size)
	}
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("connection reset")
	}
	n := min(len(p), f.n)
	f.n -= n
	return n, nil
}

func TestPutReaderErrorAndCancel(t *testing.T) {
	fx := newFixture(t, nil)
	if _, err := fx.lib.Put(context.Background(), PutMeta{}, &failingReader{n: 100000}); err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Errorf("Put from failing reader: err = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := fx.lib.Put(ctx, PutMeta{}, strings.NewReader("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with canceled ctx: err = %v", err)
	}
	if tmp := tempFiles(t, fx.dir); len(tmp) != 0 {
		t.Errorf("temp files left: %v", tmp)
	}
	if n := fx.index.len(); n != 0 {
		t.Errorf("%d records", n)
	}
}

// tamper rewrites one query parameter or the path of a signed URL.
func tamper(t *testing.T, raw string, f func(u *url.URL, q url.Values)) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	f(u, q)
	u.RawQuery = q.Encode()
	return u.String()
}

func TestSignatureChecks(t *testing.T) {
	fx := newFixture(t, nil)
	rec := fx.put(t, PutMeta{Filename: "doc.txt"}, []byte("secret document"))
	other := fx.put(t, PutMeta{Filename: "doc.txt"}, []byte("another document"))
	good := fx.lib.URL(rec)
	exp := fx.clock.Now().Add(DefaultURLTTL).Unix()

	cases := []struct {
		name   string
		target string
		status int
	}{
		{"flipped sig", tamper(t, good, func(_ *url.URL, q url.Values) {
			s := []byte(q.Get("sig"))
			s[3] ^= 'A' ^ 'B'
			if s[3] == q.Get("sig")[3] {
				s[3] = 'z'
			}
			q.Set("sig", string(s))
		}), 403},
		{"sig of other record", tamper(t, good, func(_ *url.URL, q url.Values) {
			o, _ := url.Parse(fx.lib.URL(other))
			q.Set("sig", o.Query().Get("sig"))
		}), 403},
		{"missing sig", tamper(t, good, func(_ *url.URL, q url.Values) { q.Del("sig") }), 403},
		{"missing exp", tamper(t, good, func(_ *url.URL, q url.Values) { q.Del("exp") }), 403},
		{"two sigs", good + "&sig=AAAA", 403},
		{"later exp", tamper(t, good, func(_ *url.URL, q url.Values) { q.Set("exp", fmt.Sprint(exp+1)) }), 403},
		{"exp with plus", tamper(t, good, func(_ *url.URL, q url.Values) { q.Set("exp", fmt.Sprint("+", exp)) }), 403},
		{"renamed file", tamper(t, good, func(u *url.URL, _ url.Values) { u.Path = "/media/" + rec.ID + "/doc.html" }), 403},
		{"other id", tamper(t, good, func(u *url.URL, _ url.Values) { u.Path = "/media/" + other.ID + "/doc.txt" }), 403},
		{"unknown id, valid sig", fx.lib.urlAt("AAAAAAAAAAAAAAAAAAAAAA", "doc.txt", exp), 404},
		{"good", good, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := fx.do(t, http.MethodGet, tc.target, nil)
			if w.Code != tc.status {
				t.Fatalf("GET %s: status %d, want %d", tc.target, w.Code, tc.status)
			}
			if tc.status != 200 {
				if w.Body.String() != deniedBody || w.Header().Get("Content-Type") != "text/plain; charset=utf-8" {
					t.Errorf("body %q, type %q", w.Body, w.Header().Get("Content-Type"))
				}
			}
		})
	}

	t.Run("expired", func(t *testing.T) {
		fx.clock.Add(DefaultURLTTL - time.Second)
		if w := fx.do(t, http.MethodGet, good, nil); w.Code != 200 {
			t.Fatalf("one second before expiry: %d", w.Code)
		}
		if cc := fx.do(t, http.MethodGet, good, nil).Header().Get("Cache-Control"); cc != "private, max-age=1" {
			t.Errorf("Cache-Control = %q", cc)
		}
		fx.clock.Add(time.Second)
		w := fx.do(t, http.MethodGet, good, nil)
		if w.Code != 403 || w.Body.String() != deniedBody {
			t.Fatalf("at expiry: %d %q", w.Code, w.Body)
		}
		// A fresh URL for the same record works again.
		if w := fx.do(t, http.MethodGet, fx.lib.URL(rec), nil); w.Code != 200 {
			t.Errorf("fresh URL: %d", w.Code)
		}
	})

	t.Run("deleted record", func(t *testing.T) {
		u := fx.lib.URL(other)
		if err := fx.index.DeleteMedia(context.Background(), []string{other.ID}); err != nil {
			t.Fatal(err)
		}
		w := fx.do(t, http.MethodGet, u, nil)
		if w.Code != 404 || w.Body.String() != deniedBody {
			t.Errorf("deleted record: %d %q", w.Code, w.Body)
		}
	})

	t.Run("other key", func(t *testing.T) {
		fx2 := newFixture(t, func(o *Options) { o.Key = bytes.Repeat([]byte("x"), 32); o.Index = fx.index; o.Now = fx.clock.Now })
		if w := fx2.do(t, http.MethodGet, fx.lib.URL(rec), nil); w.Code != 403 {
			t.Errorf("URL signed with another key: %d", w.Code)
		}
	})
}

func TestPathTraversal(t *testing.T) {
	fx := newFixture(t, nil)
	secret := []byte("TOP SECRET outside the media dir")
	outside := filepath.Join(filepath.Dir(fx.dir), "passwd")
	if err := os.WriteFile(outside, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	rec := fx.put(t, PutMeta{Filename: "ok.txt"}, []byte("inside"))
	exp := fx.clock.Now().Add(time.Hour).Unix()
	signed := func(id, name string) string { return fx.lib.urlAt(id, name, exp) }
	q := "?" + strings.SplitN(fx.lib.URL(rec), "?", 2)[1]

	targets := []string{
		"/media/../../etc/passwd",
		"/media/../passwd" + q,
		"/media/%2e%2e/x",
		"/media/%2e%2e/%2e%2e" + q,
		"/media/" + rec.ID + "/..%2F..%2Fpasswd" + q,
		"/media/" + rec.ID + "/%2e%2e",
		"/media/" + rec.ID + "/..",
		"/media/" + rec.ID + "/",
		"/media/" + rec.ID,
		"/media/",
		"/media",
		"/",
		"/media/abc%2Fdef/ok.txt" + q,
		"/media/" + rec.ID + "%2Fx/ok.txt" + q,
		"/media/" + rec.ID + "/ok.txt/extra" + q,
		"/media/" + strings.Repeat("/", 3) + q,
		"/media/..%5C..%5Cpasswd/x" + q,
		"/media/" + rec.ID[:21] + "=/ok.txt" + q,
		signed(rec.ID, "../../passwd"),
		signed(rec.ID, "..\\..\\passwd"),
		signed(rec.ID, ".."),
		signed("../../../../passwd", "x"),
		signed(rec.ID, "a\x00b"),
	}
	for _, target := range targets {
		w := fx.do(t, http.MethodGet, target, nil)
		if w.Code != 403 && w.Code != 404 {
			t.Errorf("GET %q: status %d", target, w.Code)
		}
		if w.Body.String() != deniedBody {
			t.Errorf("GET %q: body %q", target, w.Body)
		}
	}
}

func TestHeadRangeMethod(t *testing.T) {
	fx := newFixture(t, nil)
	content := []byte("0123456789abcdefghijklmnopqrstuvwxyz")
	rec := fx.put(t, PutMeta{Filename: "alpha.txt", ContentType: "text/plain"}, content)
	u := fx.lib.URL(rec)

	t.Run("HEAD", func(t *testing.T) {
		w := fx.do(t, http.MethodHead, u, nil)
		if w.Code != 200 {
			t.Fatalf("status %d", w.Code)
		}
		if w.Body.Len() != 0 {
			t.Errorf("HEAD body %q", w.Body)
		}
		if got := w.Header().Get("Content-Length"); got != fmt.Sprint(len(content)) {
			t.Errorf("Content-Length %q", got)
		}
		if got := w.Header().Get("Content-Type"); got != "text/plain; charset=utf-8" {
			t.Errorf("Content-Type %q", got)
		}
	})
	t.Run("Range", func(t *testing.T) {
		w := fx.do(t, http.MethodGet, u, http.Header{"Range": {"bytes=10-19"}})
		if w.Code != http.StatusPartialContent {
			t.Fatalf("status %d", w.Code)
		}
		if got, want := w.Body.String(), string(content[10:20]); got != want {
			t.Errorf("range body %q, want %q", got, want)
		}
		if got := w.Header().Get("Content-Range"); got != fmt.Sprintf("bytes 10-19/%d", len(content)) {
			t.Errorf("Content-Range %q", got)
		}
	})
	t.Run("If-Modified-Since", func(t *testing.T) {
		w := fx.do(t, http.MethodGet, u, http.Header{"If-Modified-Since": {fx.clock.Now().Add(time.Minute).Format(http.TimeFormat)}})
		if w.Code != http.StatusNotModified {
			t.Errorf("status %d", w.Code)
		}
	})
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions} {
		t.Run(m, func(t *testing.T) {
			w := fx.do(t, m, u, nil)
			if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("%s: status %d, Allow %q", m, w.Code, w.Header().Get("Allow"))
			}
		})
	}
}

func TestServeHeadersByType(t *testing.T) {
	fx := newFixture(t, nil)
	html := []byte("<!DOCTYPE html><html><body><script>alert(1)</script></body></html>")
	svg := []byte(`<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`)
	cases := []struct {
		name        string
		meta        PutMeta
		content     []byte
		wantType    string
		disposition string
		csp         string
	}{
		{"html", PutMeta{Filename: "page.html", ContentType: "text/html"}, html,
			"text/html; charset=utf-8", "attachment; filename=page.html", "sandbox"},
		{"svg", PutMeta{Filename: "logo.svg", ContentType: "image/svg+xml"}, svg,
			"image/svg+xml", "attachment; filename=logo.svg", "sandbox"},
		{"spoofed png", PutMeta{Filename: "cat.png", ContentType: "image/png"}, html,
			"application/octet-stream", "attachment; filename=cat.png", "sandbox"},
		{"undeclared html", PutMeta{Filename: "x"}, html,
			"text/html; charset=utf-8", "attachment; filename=x", "sandbox"},
		{"pdf", PutMeta{Filename: "Rechnung März 2025.pdf", ContentType: "application/pdf"}, []byte("%PDF-1.7\n..."),
			"application/pdf", "inline; filename*=utf-8''Rechnung%20M%C3%A4rz%202025.pdf", ""},
		{"jpeg declared jpg", PutMeta{Filename: "写真.jpg", ContentType: "image/jpg"}, []byte("\xff\xd8\xff\xe0 jpeg"),
			"image/jpeg", "inline; filename*=utf-8''%E5%86%99%E7%9C%9F.jpg", "sandbox"},
		{"zip", PutMeta{Filename: "a.docx", ContentType: "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}, []byte("PK\x03\x04 docx"),
			"application/vnd.openxmlformats-officedocument.wordprocessingml.document", "attachment; filename=a.docx", "sandbox"},
		{"quoted name", PutMeta{Filename: `say "hi".txt`}, []byte("hi"),
			"text/plain; charset=utf-8", `inline; filename="say \"hi\".txt"`, "sandbox"},
		{"no name", PutMeta{ContentType: "image/png"}, []byte("\x89PNG\r\n\x1a\n"),
			"image/png", "inline; filename=file.png", "sandbox"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := fx.put(t, tc.meta, tc.content)
			if rec.ContentType != tc.wantType {
				t.Errorf("record ContentType %q, want %q", rec.ContentType, tc.wantType)
			}
			u := fx.lib.URL(rec)
			w := fx.do(t, http.MethodGet, u, nil)
			if w.Code != 200 {
				t.Fatalf("GET %s: %d", u, w.Code)
			}
			if !bytes.Equal(w.Body.Bytes(), tc.content) {
				t.Errorf("body differs")
			}
			h := w.Header()
			if h.Get("Content-Type") != tc.wantType || h.Get("Content-Disposition") != tc.disposition ||
				h.Get("Content-Security-Policy") != tc.csp || h.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("headers: type %q disposition %q csp %q nosniff %q; want %q %q %q",
					h.Get("Content-Type"), h.Get("Content-Disposition"), h.Get("Content-Security-Policy"),
					h.Get("X-Content-Type-Options"), tc.wantType, tc.disposition, tc.csp)
			}
		})
	}
}

func TestURLEscapesFilename(t *testing.T) {
	fx := newFixture(t, func(o *Options) { o.PublicURL = "https://example.com/mailgate" })
	rec := fx.put(t, PutMeta{Filename: "C:\\Users\\jane\\Übersicht #1 ?.pdf"}, []byte("%PDF-"))
	u := fx.lib.URL(rec)
	want := "https://example.com/mailgate/media/" + rec.ID + "/%C3%9Cbersicht%20%231%20%3F.pdf?exp="
	if !strings.HasPrefix(u, want) {
		t.Fatalf("URL = %q, want prefix %q", u, want)
	}
	if w := fx.do(t, http.MethodGet, u, nil); w.Code != 200 {
		t.Errorf("GET: %d", w.Code)
	}
}

func TestLargeFileRoundtrip(t *testing.T) {
	const size = 20 << 20
	var lib *Library
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { lib.ServeHTTP(w, r) }))
	defer srv.Close()
	fx := newFixture(t, func(o *Options) { o.PublicURL = srv.URL })
	lib = fx.lib

	h := sha256.New()
	src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{1, 2, 3}), size), h)
	rec, err := lib.Put(context.Background(), PutMeta{Filename: "big.bin"}, src)
	if err != nil {
		t.Fatal(err)
	}
	want := hex.EncodeToString(h.Sum(nil))
	if rec.Size != size || rec.SHA256 != want {
		t.Fatalf("record %d bytes sha %s, want %d %s", rec.Size, rec.SHA256, size, want)
	}

	resp, err := srv.Client().Get(lib.URL(rec))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != size {
		t.Fatalf("status %d, length %d", resp.StatusCode, resp.ContentLength)
	}
	dh := sha256.New()
	n, err := io.Copy(dh, resp.Body)
	if err != nil || n != size {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	if got := hex.EncodeToString(dh.Sum(nil)); got != want {
		t.Errorf("download sha256 %s, want %s", got, want)
	}
}

func TestSweep(t *testing.T) {
	fx := newFixture(t, nil)
	ctx := context.Background()
	shared := []byte("shared attachment")
	lonely := []byte("only in old mail, 30 bytes....")
	oldShared := fx.put(t, PutMeta{Filename: "s.txt"}, shared)
	oldLonely := fx.put(t, PutMeta{Filename: "l.txt"}, lonely)
	fx.clock.Add(48 * time.Hour)
	newShared := fx.put(t, PutMeta{Filename: "s2.txt"}, shared)

	staleTemp := filepath.Join(fx.dir, "tmp", tempPrefix+"stale")
	freshTemp := filepath.Join(fx.dir, "tmp", tempPrefix+"fresh")
	for p, age := range map[string]time.Duration{staleTemp: 2 * time.Hour, freshTemp: time.Minute} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		mt := fx.clock.Now().Add(-age)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	oldURL := fx.lib.URL(oldShared)

	res, err := fx.lib.Sweep(ctx, fx.clock.Now().Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := SweepResult{Records: 2, Files: 1, Bytes: int64(len(lonely)), TempFiles: 1}
	if res != want {
		t.Errorf("Sweep = %+v, want %+v", res, want)
	}
	for _, id := range []string{oldShared.ID, oldLonely.ID} {
		if _, err := fx.index.Media(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("record %s still indexed: %v", id, err)
		}
	}
	if _, err := os.Stat(fx.lib.filePath(oldLonely.SHA256)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("unreferenced file kept: %v", err)
	}
	if _, err := os.Stat(fx.lib.filePath(newShared.SHA256)); err != nil {
		t.Errorf("referenced file removed: %v", err)
	}
	if w := fx.do(t, http.MethodGet, fx.lib.URL(newShared), nil); w.Code != 200 || w.Body.String() != string(shared) {
		t.Errorf("GET of kept record: %d", w.Code)
	}
	if w := fx.do(t, http.MethodGet, oldURL, nil); w.Code != 404 || w.Body.String() != deniedBody {
		t.Errorf("GET of swept record: %d %q", w.Code, w.Body)
	}
	if tmp := tempFiles(t, fx.dir); !slices.Equal(tmp, []string{tempPrefix + "fresh"}) {
		t.Errorf("temp files = %v", tmp)
	}

	// Sweeping the rest removes the last file.
	fx.clock.Add(48 * time.Hour)
	res, err = fx.lib.Sweep(ctx, fx.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 1 || res.Files != 1 || res.Bytes != int64(len(shared)) {
		t.Errorf("second Sweep = %+v", res)
	}
	if files := contentFiles(t, fx.dir); len(files) != 0 {
		t.Errorf("files left: %v", files)
	}
}

func TestNewValidation(t *testing.T) {
	dir := t.TempDir()
	base := Options{Dir: filepath.Join(dir, "m"), Key: testKey, PublicURL: "https://gw.example.com", Index: newMemIndex()}
	cases := []struct {
		name   string
		modify func(*Options)
	}{
		{"no dir", func(o *Options) { o.Dir = "" }},
		{"short key", func(o *Options) { o.Key = o.Key[:31] }},
		{"no index", func(o *Options) { o.Index = nil }},
		{"relative url", func(o *Options) { o.PublicURL = "/media" }},
		{"ftp url", func(o *Options) { o.PublicURL = "ftp://gw.example.com" }},
		{"query in url", func(o *Options) { o.PublicURL = "https://gw.example.com/?a=b" }},
		{"negative size", func(o *Options) { o.MaxSize = -1 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			tc.modify(&o)
			if _, err := New(o); err == nil {
				t.Error("New succeeded")
			} else if strings.Contains(err.Error(), string(testKey)) {
				t.Errorf("error leaks the key: %v", err)
			}
		})
	}
	lib, err := New(base)
	if err != nil {
		t.Fatal(err)
	}
	if lib.ttl != DefaultURLTTL || lib.maxSize != DefaultMaxSize {
		t.Errorf("defaults: ttl %v max %d", lib.ttl, lib.maxSize)
	}
}

func TestDecideContentType(t *testing.T) {
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00")
	html := []byte("  <html><head>")
	cases := []struct {
		declared string
		content  []byte
		want     string
	}{
		{"image/png", png, "image/png"},
		{"IMAGE/PNG; name=\"x.png\"", png, "image/png"},
		{"", png, "image/png"},
		{"application/octet-stream", png, "image/png"},
		{"application/octet-stream", []byte{0, 1, 2, 3}, "application/octet-stream"},
		{"not a type", png, "image/png"},
		{"image/png", html, "application/octet-stream"},
		{"application/pdf", []byte(`<?xml version="1.0"?><x/>`), "application/octet-stream"},
		{"image/svg+xml", []byte(`<?xml version="1.0"?><svg/>`), "image/svg+xml"},
		{"text/html", html, "text/html; charset=utf-8"},
		{"text/html; charset=ISO-8859-1", html, "text/html; charset=iso-8859-1"},
		{"image/jpeg", png, "image/png"},
		{"image/png", []byte("just some text"), "text/plain; charset=utf-8"},
		{"text/csv", []byte("a,b\n1,2\n"), "text/csv; charset=utf-8"},
		{"application/json", []byte(`{"a":1}`), "application/json"},
		{"application/x-foo", []byte{0, 0xff, 0x10}, "application/x-foo"},
		{"audio/ogg", []byte("OggS\x00\x02"), "audio/ogg"},
		{"image/pjpeg", []byte("\xff\xd8\xff\xe0"), "image/jpeg"},
		{"audio/wav", []byte("RIFF\x00\x00\x00\x00WAVEfmt "), "audio/wave"},
		{"application/vnd.ms-excel", []byte("PK\x03\x04"), "application/vnd.ms-excel"},
		{"image/gif", []byte("PK\x03\x04"), "application/zip"},
		{"", nil, "text/plain; charset=utf-8"},
	}
	for _, tc := range cases {
		if got := decideContentType(tc.declared, tc.content); got != tc.want {
			t.Errorf("decideContentType(%q, %q) = %q, want %q", tc.declared, tc.content, got, tc.want)
		}
	}
}

func TestSanitizeFilename(t *testing.T) {
	cases := []struct{ in, want string }{
		{"report.pdf", "report.pdf"},
		{"../../etc/passwd", "passwd"},
		{`C:\Users\a\b.txt`, "b.txt"},
		{"dir/", ""},
		{"..", ""},
		{"  spaced\tname .txt  ", "spacedname .txt"},
		{"evil\u202Efdp.exe", "evilfdp.exe"},
		{"line\r\nbreak", "linebreak"},
		{"bad\xffutf8", "bad\uFFFDutf8"},
		{"Grüße.doc", "Grüße.doc"},
		{strings.Repeat("ä", 150) + ".pdf", strings.Repeat("ä", 98) + ".pdf"},
	}
	for _, tc := range cases {
		got := sanitizeFilename(tc.in)
		if got != tc.want {
			t.Errorf("sanitizeFilename(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if sanitizeFilename(got) != got {
			t.Errorf("sanitizeFilename not idempotent on %q", got)
		}
	}
}

func FuzzParsePath(f *testing.F) {
	lib, err := New(Options{Dir: f.TempDir(), Key: testKey, PublicURL: "https://gw.example.com", Index: newMemIndex()})
	if err != nil {
		f.Fatal(err)
	}
	goodURL, _ := url.Parse(lib.urlAt("AAAAAAAAAAAAAAAAAAAAAA", "Grüße 1.pdf", 1700000000))
	f.Add(goodURL.EscapedPath(), goodURL.RawQuery)
	f.Add("/prefix/media/AAAAAAAAAAAAAAAAAAAAAA/a.txt", "exp=1&sig=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("/media/../../etc/passwd", "")
	f.Add("/media/%2e%2e/x", "exp=1&sig=x")
	f.Add("/media/AAAAAAAAAAAAAAAAAAAAAA/a%2Fb", "exp=+1&sig=;")
	f.Add("/media/AAAAAAAAAAAAAAAAAAAAAA/%ff", "exp=1&exp=2")
	f.Fuzz(func(t *testing.T, escapedPath, rawQuery string) {
		u, err := parseMediaURL(escapedPath, rawQuery)
		if err != nil {
			return
		}
		if !validID(u.id) || u.name == "" || sanitizeFilename(u.name) != u.name || strings.ContainsAny(u.name, "/\\\x00") ||
			u.exp <= 0 || len(u.sig) != sha256.Size {
			t.Fatalf("accepted bad URL %q?%q: %+v", escapedPath, rawQuery, u)
		}
		// What we sign must parse back to the same parts.
		again, err := url.Parse(lib.urlAt(u.id, u.name, u.exp))
		if err != nil {
			t.Fatal(err)
		}
		v, err := parseMediaURL(again.EscapedPath(), again.RawQuery)
		if err != nil || v.id != u.id || v.name != u.name || v.exp != u.exp {
			t.Fatalf("re-signed URL %s parses to %+v, %v; want %+v", again, v, err, u)
		}
		if !lib.verify(v, time.Unix(u.exp-1, 0)) {
			t.Fatalf("re-signed URL %s does not verify", again)
		}
	})
}

// zeroReader yields zero bytes forever without allocating.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func BenchmarkPut(b *testing.B) {
	const size = DefaultMaxSize
	fx := newFixture(b, nil)
	b.ReportAllocs()
	b.SetBytes(size)
	for b.Loop() {
		if _, err := fx.lib.Put(context.Background(), PutMeta{Filename: "bench.bin"}, io.LimitReader(zeroReader{}, size)); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRemove: removing records deletes their files at once unless another
// record shares the content; unknown ids are ignored.
func TestRemove(t *testing.T) {
	fx := newFixture(t, nil)
	ctx := context.Background()
	shared := []byte("shared attachment")
	lonely := []byte("only in the quarantined email")
	a := fx.put(t, PutMeta{Filename: "s.txt"}, shared)
	b := fx.put(t, PutMeta{Filename: "l.txt"}, lonely)
	kept := fx.put(t, PutMeta{Filename: "s2.txt"}, shared)

	res, err := fx.lib.Remove(ctx, []string{a.ID, b.ID, "AAAAAAAAAAAAAAAAAAAAAA"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (SweepResult{Records: 2, Files: 1, Bytes: int64(len(lonely))}); res != want {
		t.Errorf("Remove = %+v, want %+v", res, want)
	}
	if _, err := os.Stat(fx.lib.filePath(b.SHA256)); !os.IsNotExist(err) {
		t.Errorf("the lonely file is still there: %v", err)
	}
	if _, err := os.Stat(fx.lib.filePath(kept.SHA256)); err != nil {
		t.Errorf("the shared file is gone: %v", err)
	}
	if _, err := fx.lib.index.Media(ctx, a.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("record %s still indexed: %v", a.ID, err)
	}
}

// Put leaves the fsync to Sync, which syncs every file placed since the
// last call (and their directories) once, skips files removed meanwhile,
// and keeps what it could not sync for the next call.
func TestSyncAfterPut(t *testing.T) {
	fx := newFixture(t, nil)
	a := fx.put(t, PutMeta{Filename: "a.txt"}, []byte("first file"))
	fx.put(t, PutMeta{Filename: "b.txt"}, []byte("second file"))
	fx.put(t, PutMeta{Filename: "a-again.txt"}, []byte("first file")) // same content: no new file
	pending := func() (files, dirs int) {
		fx.lib.unsynced.Lock()
		defer fx.lib.unsynced.Unlock()
		return len(fx.lib.unsynced.files), len(fx.lib.unsynced.dirs)
	}
	if files, dirs := pending(); files != 2 || dirs < 2 {
		t.Fatalf("after 3 Puts of 2 contents: %d files and %d directories to sync, want 2 and at least 2", files, dirs)
	}
	if err := fx.lib.Sync(); err != nil {
		t.Fatal(err)
	}
	if files, dirs := pending(); files != 0 || dirs != 0 {
		t.Fatalf("after Sync: %d files and %d directories still to sync", files, dirs)
	}

	c := fx.put(t, PutMeta{Filename: "c.txt"}, []byte("swept before the sync"))
	if err := os.Remove(fx.lib.filePath(c.SHA256)); err != nil {
		t.Fatal(err)
	}
	if err := fx.lib.Sync(); err != nil {
		t.Fatalf("Sync with a removed file: %v", err)
	}

	// A path that cannot be opened stays pending.
	fx.put(t, PutMeta{Filename: "d.txt"}, []byte("placed with a bad path"))
	fx.lib.unsynced.Lock()
	fx.lib.unsynced.files[filepath.Join(fx.lib.filePath(a.SHA256), "x")] = true // ENOTDIR
	fx.lib.unsynced.Unlock()
	if err := fx.lib.Sync(); err == nil {
		t.Fatal("Sync of a path below a file: no error")
	}
	if files, _ := pending(); files != 1 {
		t.Errorf("after a failed Sync: %d files pending, want the one that failed", files)
	}
}

// BenchmarkPutSync stores a new 500 KB file per op, as the backlog bench's
// PDFs (bench/mails.go), and syncs it as the pipeline does before a ledger
// commit: the library's own cost per attachment (files, fsyncs), without
// the parser.
func BenchmarkPutSync(b *testing.B) {
	fx := newFixture(b, nil)
	content := make([]byte, 500<<10)
	for i := range content {
		content[i] = byte(i*7 + i>>8)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(content)))
	n := uint64(0)
	cpu0 := cpuTime(b)
	for b.Loop() {
		n++
		binary.LittleEndian.PutUint64(content, n) // a new content each op
		if _, err := fx.lib.Put(context.Background(), PutMeta{Filename: "scan.pdf", ContentType: "application/pdf"}, bytes.NewReader(content)); err != nil {
			b.Fatal(err)
		}
		if err := fx.lib.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the user and system CPU time of the process so far: the
// fsyncs' wait for the disk is not CPU, the kernel's work for them is.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
