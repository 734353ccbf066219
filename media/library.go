package media

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ErrNotFound is returned by an Index when a record does not exist.
var ErrNotFound = errors.New("media: not found")

// ErrTooLarge is wrapped by Put when the content exceeds Options.MaxSize.
var ErrTooLarge = errors.New("media: file too large")

// Default option values.
const (
	DefaultURLTTL  = 7 * 24 * time.Hour
	DefaultMaxSize = 25 << 20
	minKeySize     = 32
	copyBufferSize = 512 << 10
	staleTempAge   = time.Hour
	tempPrefix     = "put-"
)

// Record is the index entry of one stored attachment. Several records may
// share one file (same SHA256).
type Record struct {
	ID          string    // random, 22 characters of base64url
	SHA256      string    // lower-case hex digest of the content; names the file
	Size        int64     // content length in bytes
	ContentType string    // the type the file is served with
	Filename    string    // sanitized file name, may be empty
	Channel     string    // opaque to this package (the caller's channel name)
	LedgerID    int64     // opaque to this package (the caller's ledger entry)
	CreatedAt   time.Time // when Put stored the record (UTC)
}

// Index persists Records. The store package provides one; the Library only
// calls it, never caches it.
type Index interface {
	// PutMedia inserts a new record.
	PutMedia(ctx context.Context, m *Record) error
	// Media returns the record with the given id, or an error satisfying
	// errors.Is(err, ErrNotFound).
	Media(ctx context.Context, id string) (*Record, error)
	// ExpiredMedia returns the records created before the given time.
	ExpiredMedia(ctx context.Context, before time.Time) ([]*Record, error)
	// DeleteMedia removes the records with the given ids.
	DeleteMedia(ctx context.Context, ids []string) error
	// MediaRefs counts the records whose SHA256 equals sha256.
	MediaRefs(ctx context.Context, sha256 string) (int, error)
}

// Blobs keeps the contents of the library's files somewhere other than
// Dir: the store package keeps them in its database, so that several
// mailgate instances sharing a PostgreSQL store serve every signed URL
// whichever instance a request reaches. Contents are named by their
// SHA256 (lower-case hex).
type Blobs interface {
	// PutMediaBlob stores size bytes of src under sum, unless a content
	// is stored under sum already.
	PutMediaBlob(ctx context.Context, sum string, size int64, src io.ReaderAt) error
	// MediaBlob opens the content of sum, or returns an error satisfying
	// errors.Is(err, ErrNotFound).
	MediaBlob(ctx context.Context, sum string) (io.ReadSeeker, error)
	// DeleteMediaBlob removes the content of sum unless a record still
	// refers to it, and returns how many bytes it removed.
	DeleteMediaBlob(ctx context.Context, sum string) (int64, error)
}

// Options configures a Library.
type Options struct {
	// Dir is the root directory for files; created with mode 0700.
	Dir string
	// Key is the HMAC-SHA256 key for URL signatures, at least 32 bytes.
	Key []byte
	// PublicURL is the externally visible base URL, e.g.
	// "https://gw.example.com" or "https://example.com/mailgate".
	PublicURL string
	// URLTTL is how long a signed URL stays valid; default DefaultURLTTL.
	URLTTL time.Duration
	// MaxSize is the largest accepted file in bytes; default DefaultMaxSize.
	MaxSize int64
	// Index stores the records; required.
	Index Index
	// Blobs, when set, keeps the file contents instead of Dir (which then
	// holds only Put's temporary files).
	Blobs Blobs
	// Logger receives warnings and sweep summaries; default discards.
	Logger *slog.Logger
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// PutMeta describes content handed to Library.Put.
type PutMeta struct {
	Filename    string // as declared by the sender; sanitized before storing
	ContentType string // as declared by the sender; checked against the content
	Channel     string // copied to Record.Channel
	LedgerID    int64  // copied to Record.LedgerID
}

// Library is the set of stored media files: it stores them, signs their
// URLs, serves them over HTTP and sweeps expired ones.
type Library struct {
	dir       string
	tmpDir    string
	key       []byte
	publicURL string
	ttl       time.Duration
	maxSize   int64
	index     Index
	blobs     Blobs
	log       *slog.Logger
	now       func() time.Time

	// copyBufs holds *[]byte of copyBufferSize for Put, reused so that
	// a new buffer is neither allocated nor zeroed for every file.
	copyBufs sync.Pool

	// mu orders "file exists -> add a record" in Put against
	// "no records left -> remove file" in Sweep.
	mu sync.Mutex

	// unsynced are the files Put placed and the directories it changed
	// that Sync has not made durable yet.
	unsynced struct {
		sync.Mutex
		files, dirs map[string]bool
	}
}

// New validates opts, creates Dir and Dir/tmp (mode 0700) and returns a
// Library.
func New(opts Options) (*Library, error) {
	if opts.Dir == "" {
		return nil, errors.New("media: Options.Dir is empty")
	}
	if len(opts.Key) < minKeySize {
		return nil, fmt.Errorf("media: Options.Key has %d bytes, need at least %d", len(opts.Key), minKeySize)
	}
	if opts.Index == nil {
		return nil, errors.New("media: Options.Index is nil")
	}
	pub, err := url.Parse(opts.PublicURL)
	if err != nil {
		return nil, fmt.Errorf("media: parse Options.PublicURL %q: %w", opts.PublicURL, err)
	}
	if (pub.Scheme != "https" && pub.Scheme != "http") || pub.Host == "" || pub.RawQuery != "" || pub.Fragment != "" || pub.User != nil {
		return nil, fmt.Errorf("media: Options.PublicURL %q must be an http(s) URL without user, query or fragment", opts.PublicURL)
	}
	if opts.URLTTL < 0 || opts.MaxSize < 0 {
		return nil, errors.New("media: Options.URLTTL and Options.MaxSize must not be negative")
	}
	l := &Library{
		dir:       filepath.Clean(opts.Dir),
		key:       append([]byte(nil), opts.Key...),
		publicURL: strings.TrimRight(opts.PublicURL, "/"),
		ttl:       opts.URLTTL,
		maxSize:   opts.MaxSize,
		index:     opts.Index,
		blobs:     opts.Blobs,
		log:       opts.Logger,
		now:       opts.Now,
	}
	l.tmpDir = filepath.Join(l.dir, "tmp")
	l.copyBufs.New = func() any {
		b := make([]byte, copyBufferSize)
		return &b
	}
	if l.ttl == 0 {
		l.ttl = DefaultURLTTL
	}
	if l.maxSize == 0 {
		l.maxSize = DefaultMaxSize
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.now == nil {
		l.now = time.Now
	}
	for _, d := range []string{l.dir, l.tmpDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("media: create %q: %w", d, err)
		}
	}
	return l, nil
}

// Put streams r into the library and adds a Record for it.
//
// The content goes to a temporary file while being hashed; it is never held
// in memory. More than MaxSize bytes fail with an error wrapping ErrTooLarge.
// The file is then moved to its content-addressed path, or dropped if that
// file already exists. Every call creates a record with a new random ID.
// The file survives a power cut only once Sync has returned.
func (l *Library) Put(ctx context.Context, meta PutMeta, r io.Reader) (*Record, error) {
	id, err := newID()
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(l.tmpDir, tempPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("media: create temp file in %q: %w", l.tmpDir, err)
	}
	tmpName := tmp.Name()
	placed := false
	defer func() {
		if !placed {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()

	// A reader that hashes what it returns (the parser's attachment
	// reader) spares Put a second pass over the content.
	hr, preHashed := r.(SHA256Reader)
	var h hash.Hash
	var hw io.Writer = io.Discard
	if !preHashed {
		h = sha256.New()
		hw = h
	}
	bufp := l.copyBufs.Get().(*[]byte)
	defer l.copyBufs.Put(bufp)
	n, head, err := copyHashed(tmp, hw, ctxReader{ctx: ctx, r: r}, l.maxSize+1, *bufp)
	if err != nil {
		return nil, fmt.Errorf("media: store %q: %w", meta.Filename, err)
	}
	if n > l.maxSize {
		return nil, fmt.Errorf("media: store %q: more than %d bytes: %w", meta.Filename, l.maxSize, ErrTooLarge)
	}
	// No fsync here: Sync does it, for every file placed since the last
	// call at once, before a reference to the file is committed.
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("media: close %q: %w", tmpName, err)
	}

	var digest []byte
	if preHashed {
		if d, count := hr.ReadSHA256(); count == n {
			digest = d[:]
		} else {
			// The reader had returned bytes before Put: hash the file.
			if digest, err = hashFile(tmpName, *bufp); err != nil {
				return nil, err
			}
		}
	} else {
		digest = h.Sum(nil)
	}
	sum := hex.EncodeToString(digest)
	rec := &Record{
		ID:          id,
		SHA256:      sum,
		Size:        n,
		ContentType: decideContentType(meta.ContentType, head),
		Filename:    sanitizeFilename(meta.Filename),
		Channel:     meta.Channel,
		LedgerID:    meta.LedgerID,
		CreatedAt:   l.now().UTC(),
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	created, err := l.keep(ctx, tmpName, sum, n)
	placed = true // tmpName is renamed or removed by place
	if err != nil {
		os.Remove(tmpName)
		return nil, err
	}
	if err := l.index.PutMedia(ctx, rec); err != nil {
		if created {
			if _, _, rerr := l.removeIfUnreferenced(ctx, sum); rerr != nil {
				l.log.Warn("media: remove file after failed index insert", "sha256", sum, "err", rerr)
			}
		}
		return nil, fmt.Errorf("media: index record for %s: %w", sum, err)
	}
	return rec, nil
}

// keep makes the temp file the content of sum: in Blobs when set, else
// at its path under Dir (place). l.mu must be held.
func (l *Library) keep(ctx context.Context, tmpName, sum string, size int64) (created bool, err error) {
	if l.blobs == nil {
		return l.place(tmpName, sum, size)
	}
	defer os.Remove(tmpName)
	f, err := os.Open(tmpName)
	if err != nil {
		return false, fmt.Errorf("media: open %q: %w", tmpName, err)
	}
	defer f.Close()
	if err := l.blobs.PutMediaBlob(ctx, sum, size, f); err != nil {
		return false, fmt.Errorf("media: store %s: %w", sum, err)
	}
	// Another record may share the content: the index decides when it
	// goes (DeleteMediaBlob keeps a referenced content).
	return true, nil
}

// place moves the temp file to the content-addressed path of sum, unless an
// intact file is already there. It reports whether it created the file.
// l.mu must be held.
func (l *Library) place(tmpName, sum string, size int64) (created bool, err error) {
	final := l.filePath(sum)
	if fi, err := os.Stat(final); err == nil && fi.Mode().IsRegular() && fi.Size() == size {
		if err := os.Remove(tmpName); err != nil {
			l.log.Warn("media: remove duplicate temp file", "path", tmpName, "err", err)
		}
		return false, nil
	}
	sub := filepath.Dir(final)
	subInfo, statErr := os.Stat(sub)
	if statErr != nil || !subInfo.IsDir() {
		// Not when sub is a directory: MkdirAll would stat it again.
		if err := os.MkdirAll(sub, 0o700); err != nil {
			return false, fmt.Errorf("media: create %q: %w", sub, err)
		}
	}
	if err := os.Rename(tmpName, final); err != nil {
		return false, fmt.Errorf("media: rename %q to %q: %w", tmpName, final, err)
	}
	l.unsynced.Lock()
	if l.unsynced.files == nil {
		l.unsynced.files, l.unsynced.dirs = make(map[string]bool), make(map[string]bool)
	}
	l.unsynced.files[final] = true
	l.unsynced.dirs[sub] = true
	if statErr != nil {
		l.unsynced.dirs[l.dir] = true // sub is new
	}
	l.unsynced.Unlock()
	return true, nil
}

// Sync makes the files that Put placed since the last Sync durable: it
// fsyncs the files, then the directories that got new entries, several at
// once (the file system commits its journal for them together). A file
// removed meanwhile (Sweep) is skipped; what fails is kept for the next
// call. Put itself does not fsync: a caller that is about to commit a
// reference to files it stored (a ledger row) calls Sync once before, for
// all of them.
func (l *Library) Sync() error {
	l.unsynced.Lock()
	files, dirs := l.unsynced.files, l.unsynced.dirs
	l.unsynced.files, l.unsynced.dirs = nil, nil
	l.unsynced.Unlock()
	failedFiles, errFiles := syncAll(files)
	failedDirs, errDirs := syncAll(dirs)
	if err := errors.Join(errFiles, errDirs); err != nil {
		l.unsynced.Lock()
		if l.unsynced.files == nil {
			l.unsynced.files, l.unsynced.dirs = make(map[string]bool), make(map[string]bool)
		}
		for _, p := range failedFiles {
			l.unsynced.files[p] = true
		}
		for _, p := range failedDirs {
			l.unsynced.dirs[p] = true
		}
		l.unsynced.Unlock()
		return fmt.Errorf("media: sync: %w", err)
	}
	return nil
}

// maxSyncing bounds the concurrent fsyncs of Sync.
const maxSyncing = 8

// syncAll fsyncs the paths, up to maxSyncing at once, and returns those
// that failed.
func syncAll(paths map[string]bool) (failed []string, err error) {
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		slot = make(chan struct{}, maxSyncing)
	)
	for p := range paths {
		slot <- struct{}{}
		wg.Go(func() {
			defer func() { <-slot }()
			if e := fsyncPath(p); e != nil {
				mu.Lock()
				failed, err = append(failed, p), errors.Join(err, e)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return failed, err
}

// fsyncPath opens path and fsyncs it; a path that is gone needs none.
func fsyncPath(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// removeIfUnreferenced deletes the file of sum when no record refers to it
// and reports whether it did and how large the file was. l.mu must be held.
func (l *Library) removeIfUnreferenced(ctx context.Context, sum string) (removed bool, size int64, err error) {
	if l.blobs != nil {
		size, err := l.blobs.DeleteMediaBlob(ctx, sum)
		if err != nil {
			return false, 0, fmt.Errorf("media: remove %s: %w", sum, err)
		}
		return size > 0, size, nil
	}
	refs, err := l.index.MediaRefs(ctx, sum)
	if err != nil {
		return false, 0, fmt.Errorf("media: count references to %s: %w", sum, err)
	}
	if refs > 0 {
		return false, 0, nil
	}
	p := l.filePath(sum)
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, fmt.Errorf("media: stat %q: %w", p, err)
	}
	if err := os.Remove(p); err != nil {
		return false, 0, fmt.Errorf("media: remove %q: %w", p, err)
	}
	return true, fi.Size(), nil
}

// filePath is the content-addressed path of a validated digest.
func (l *Library) filePath(sum string) string {
	return filepath.Join(l.dir, sum[:2], sum)
}

// validSHA256 reports whether s is 64 lower-case hex digits.
func validSHA256(s string) bool {
	if len(s) != sha256.Size*2 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// idBytes is the number of random bytes in a record ID.
const idBytes = 16

// idLen is the length of an encoded record ID: 16 bytes in unpadded base64.
const idLen = (idBytes*8 + 5) / 6

func newID() (string, error) {
	var b [idBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("media: generate id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// validID reports whether s is a canonical encoding of a record ID.
func validID(s string) bool {
	if len(s) != idLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return false
		}
	}
	_, err := base64.RawURLEncoding.Strict().DecodeString(s)
	return err == nil
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// SHA256Reader is a reader that hashes what it returns. Put uses the
// digest of such a reader instead of hashing the content itself, when
// ReadSHA256's count equals what Put read.
type SHA256Reader interface {
	io.Reader
	// ReadSHA256 returns the SHA-256 digest of every byte that Read has
	// returned so far, and how many bytes that was.
	ReadSHA256() (sum [sha256.Size]byte, n int64)
}

// hashFile returns the SHA-256 digest of the file at path, read through
// buf.
func hashFile(path string, buf []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("media: open %q: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, struct{ io.Reader }{f}, buf); err != nil {
		return nil, fmt.Errorf("media: read %q: %w", path, err)
	}
	return h.Sum(nil), nil
}

// sniffLen is how much of the content decideContentType looks at.
const sniffLen = 512

// copyHashed copies up to limit bytes from src to dst through buf and
// writes them to h as well. It fills buf before each write, so that dst
// (a file) gets few large write calls however little each Read returns,
// and hashes each filled buffer just before writing it. It returns the
// bytes copied, a copy of the first sniffLen of them, and the first error
// other than io.EOF.
func copyHashed(dst io.Writer, h io.Writer, src io.Reader, limit int64, buf []byte) (n int64, head []byte, err error) {
	for limit > 0 {
		if int64(len(buf)) > limit {
			buf = buf[:limit]
		}
		m, rerr := readFull(src, buf)
		if m > 0 {
			if head == nil {
				head = append([]byte(nil), buf[:min(m, sniffLen)]...)
			}
			h.Write(buf[:m])
			if _, werr := dst.Write(buf[:m]); werr != nil {
				return n, head, werr
			}
			n += int64(m)
			limit -= int64(m)
		}
		if rerr == io.EOF {
			return n, head, nil
		}
		if rerr != nil {
			return n, head, rerr
		}
	}
	return n, head, nil
}

// readFull reads into buf until it is full or src fails; it returns
// io.EOF with what it read when src ends first.
func readFull(src io.Reader, buf []byte) (int, error) {
	m := 0
	for m < len(buf) {
		k, err := src.Read(buf[m:])
		m += k
		if err != nil {
			return m, err
		}
	}
	return m, nil
}
