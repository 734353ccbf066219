package media

import (
	"errors"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"strconv"
	"time"
)

// deniedBody is the body of both 403 and 404 answers, so that a prober
// cannot tell a bad signature from an unknown record.
const deniedBody = "forbidden or not found\n"

// ServeHTTP serves GET and HEAD requests for signed media URLs. The path must
// end in /media/<id>/<filename>, so the Library can be mounted at "/media/"
// or under a prefix.
//
// The signature and expiry are checked before the index is consulted: a
// missing, altered or expired signature gives 403, a validly signed URL for
// a record or file that no longer exists gives 404, with identical bodies.
// Files are found only through the record's SHA256, never from the request
// path. Range, conditional and HEAD requests are handled by
// http.ServeContent. Types a browser could execute are sent as attachments
// and every response carries "X-Content-Type-Options: nosniff" and (except
// PDF, which browsers refuse to render sandboxed) "Content-Security-Policy:
// sandbox".
func (l *Library) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	u, err := parseMediaURL(r.URL.EscapedPath(), r.URL.RawQuery)
	if errors.Is(err, errNotMediaPath) {
		deny(w, http.StatusNotFound)
		return
	}
	if err != nil {
		deny(w, http.StatusForbidden)
		return
	}
	now := l.now()
	if !l.verify(u, now) {
		deny(w, http.StatusForbidden)
		return
	}

	rec, err := l.index.Media(r.Context(), u.id)
	if errors.Is(err, ErrNotFound) {
		deny(w, http.StatusNotFound)
		return
	}
	if err != nil {
		l.log.Error("media: look up record", "id", u.id, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if rec.ID != u.id || !validSHA256(rec.SHA256) {
		l.log.Error("media: index returned an invalid record", "id", u.id, "record_id", rec.ID)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}

	if l.blobs != nil {
		content, err := l.blobs.MediaBlob(r.Context(), rec.SHA256)
		if errors.Is(err, ErrNotFound) {
			l.log.Warn("media: content of indexed record is missing", "id", u.id, "sha256", rec.SHA256)
			deny(w, http.StatusNotFound)
			return
		}
		if err != nil {
			l.log.Error("media: open content", "sha256", rec.SHA256, "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		l.serve(w, r, rec, u, now, content)
		return
	}
	p := l.filePath(rec.SHA256)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		l.log.Warn("media: file of indexed record is missing", "id", u.id, "sha256", rec.SHA256)
		deny(w, http.StatusNotFound)
		return
	}
	if err != nil {
		l.log.Error("media: open file", "path", p, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		l.log.Error("media: not a regular file", "path", p, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	l.serve(w, r, rec, u, now, f)
}

// serve answers with the content of rec.
func (l *Library) serve(w http.ResponseWriter, r *http.Request, rec *Record, u mediaURL, now time.Time, content io.ReadSeeker) {
	ct := rec.ContentType
	base, _, err := mime.ParseMediaType(ct)
	if err != nil || base == "" {
		ct, base = octetStream, octetStream
	}
	disposition := "inline"
	if !inlineSafe(base) || scriptable(base) {
		disposition = "attachment"
	}
	cd := mime.FormatMediaType(disposition, map[string]string{"filename": urlName(rec)})
	if cd == "" {
		cd = disposition
	}

	h := w.Header()
	h.Set("Content-Type", ct)
	h.Set("Content-Disposition", cd)
	h.Set("X-Content-Type-Options", "nosniff")
	if base != "application/pdf" {
		h.Set("Content-Security-Policy", "sandbox")
	}
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "private, max-age="+strconv.FormatInt(max(u.exp-now.Unix(), 0), 10))
	http.ServeContent(w, r, "", rec.CreatedAt, content)
}

// deny answers 403 or 404 with the shared body.
func deny(w http.ResponseWriter, status int) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(deniedBody)))
	w.WriteHeader(status)
	w.Write([]byte(deniedBody))
}
