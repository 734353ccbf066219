package media

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// URL returns a signed URL for rec that is valid for Options.URLTTL:
//
//	<PublicURL>/media/<id>/<path-escaped file name>?exp=<unix seconds>&sig=<sig>
//
// The file name is rec.Filename after sanitizing, or "file" plus an
// extension for the content type when that is empty. sig is the unpadded
// base64url HMAC-SHA256 of the canonical string described at signature.
func (l *Library) URL(rec *Record) string {
	exp := l.now().Add(l.ttl).Unix()
	return l.urlAt(rec.ID, urlName(rec), exp)
}

func (l *Library) urlAt(id, name string, exp int64) string {
	var b strings.Builder
	b.WriteString(l.publicURL)
	b.WriteString("/media/")
	b.WriteString(id)
	b.WriteByte('/')
	b.WriteString(url.PathEscape(name))
	b.WriteString("?exp=")
	b.WriteString(strconv.FormatInt(exp, 10))
	b.WriteString("&sig=")
	b.WriteString(base64.RawURLEncoding.EncodeToString(l.signature(id, name, exp)))
	return b.String()
}

// signature is the HMAC-SHA256, under the library key, of the canonical
// string
//
//	"mailgate-media-url-v1\n" + id + "\n" + name + "\n" + decimal(exp)
//
// where name is the unescaped file name. Neither id (base64url) nor exp
// (digits) can contain a newline, so the string splits back into its parts
// in exactly one way.
func (l *Library) signature(id, name string, exp int64) []byte {
	m := hmac.New(sha256.New, l.key)
	m.Write([]byte("mailgate-media-url-v1\n"))
	m.Write([]byte(id))
	m.Write([]byte{'\n'})
	m.Write([]byte(name))
	m.Write([]byte{'\n'})
	m.Write([]byte(strconv.FormatInt(exp, 10)))
	return m.Sum(nil)
}

// verify reports whether u carries a valid signature and has not expired
// at now. The MAC comparison takes constant time.
func (l *Library) verify(u mediaURL, now time.Time) bool {
	ok := hmac.Equal(u.sig, l.signature(u.id, u.name, u.exp))
	return ok && u.exp > now.Unix()
}

// mediaURL is a parsed media request.
type mediaURL struct {
	id   string
	name string // unescaped
	exp  int64
	sig  []byte
}

// Parse errors. The handler answers both with the same body.
var (
	errNotMediaPath = errors.New("media: not a media path")
	errBadQuery     = errors.New("media: bad or missing exp/sig")
)

// maxNameBytes bounds the file name accepted from a URL.
const maxNameBytes = 4 * maxFilenameBytes

// parseMediaURL parses the escaped path and raw query of a request.
// The path must end in exactly "/media/<id>/<name>"; anything before
// "/media" is a mount prefix and ignored. id must be a well-formed record
// ID and name a non-empty file name that sanitizeFilename leaves as it is
// (so no slashes, dot segments or control characters). The query must hold
// exactly one exp (canonical decimal, positive) and one sig (unpadded
// base64url of 32 bytes).
func parseMediaURL(escapedPath, rawQuery string) (mediaURL, error) {
	var u mediaURL
	segs := strings.Split(escapedPath, "/")
	if len(segs) < 4 || segs[len(segs)-3] != "media" {
		return u, errNotMediaPath
	}
	rawID, rawName := segs[len(segs)-2], segs[len(segs)-1]
	if !validID(rawID) {
		return u, errNotMediaPath
	}
	name, err := url.PathUnescape(rawName)
	if err != nil || name == "" || len(name) > maxNameBytes || sanitizeFilename(name) != name {
		return u, errNotMediaPath
	}
	u.id, u.name = rawID, name

	q, err := url.ParseQuery(rawQuery)
	if err != nil || len(q["exp"]) != 1 || len(q["sig"]) != 1 {
		return u, errBadQuery
	}
	expStr, sigStr := q["exp"][0], q["sig"][0]
	exp, err := strconv.ParseInt(expStr, 10, 64)
	if err != nil || exp <= 0 || strconv.FormatInt(exp, 10) != expStr {
		return u, errBadQuery
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(sigStr)
	if err != nil || len(sig) != sha256.Size {
		return u, errBadQuery
	}
	u.exp, u.sig = exp, sig
	return u, nil
}
