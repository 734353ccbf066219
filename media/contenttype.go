package media

import (
	"mime"
	"net/http"
	"path"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

const octetStream = "application/octet-stream"

// decideContentType picks the type a file is served with from the type the
// sender declared and the type sniffed from the first bytes of the content:
//
//   - no usable declared type (missing, invalid, or generic binary): the
//     sniffed type;
//   - the declared type is a non-standard alias of the sniffed one in the
//     same major type (image/jpg for image/jpeg): the sniffed type;
//   - the declared type agrees with the sniffed one (same type, an alias, a
//     container format such as zip for office documents, or a sniffer result
//     too vague to disagree): the declared type;
//   - they disagree and the content sniffs as markup a browser would run
//     (HTML, XML): application/octet-stream, since the declaration is a lie
//     that would turn an "image" into a page;
//   - they disagree otherwise: the sniffed type, which describes the bytes.
//
// The result keeps only a charset parameter.
func decideContentType(declared string, head []byte) string {
	sniffedFull := http.DetectContentType(head)
	sniffed, sniffedParams, _ := mime.ParseMediaType(sniffedFull)

	decl, declParams, err := mime.ParseMediaType(declared)
	if err != nil || decl == "" || !strings.Contains(decl, "/") || genericBinary(decl) {
		return formatType(sniffed, sniffedParams)
	}
	if sniffAlias(sniffed, decl) && majorType(sniffed) == majorType(decl) {
		// image/jpg -> image/jpeg: the sniffer's name is the standard one.
		return formatType(sniffed, sniffedParams)
	}
	if consistent(decl, sniffed) {
		if strings.HasPrefix(decl, "text/") && declParams["charset"] == "" {
			declParams = sniffedParams
		}
		return formatType(decl, declParams)
	}
	if scriptable(sniffed) {
		return octetStream
	}
	return formatType(sniffed, sniffedParams)
}

// formatType formats a media type keeping only its charset parameter.
func formatType(t string, params map[string]string) string {
	if t == "" {
		return octetStream
	}
	var keep map[string]string
	if cs := strings.ToLower(params["charset"]); cs != "" {
		keep = map[string]string{"charset": cs}
	}
	if s := mime.FormatMediaType(t, keep); s != "" {
		return s
	}
	if s := mime.FormatMediaType(t, nil); s != "" {
		return s
	}
	return octetStream
}

func majorType(t string) string {
	major, _, _ := strings.Cut(t, "/")
	return major
}

func genericBinary(t string) bool {
	switch t {
	case octetStream, "binary/octet-stream", "application/unknown", "application/binary", "application/x-download", "application/force-download":
		return true
	}
	return false
}

// sniffAlias reports whether decl is another name for sniffed, a type
// http.DetectContentType returns.
func sniffAlias(sniffed, decl string) bool {
	var aliases []string
	switch sniffed {
	case "image/jpeg":
		aliases = []string{"image/jpg", "image/pjpeg"}
	case "image/x-icon":
		aliases = []string{"image/vnd.microsoft.icon", "image/ico", "image/icon"}
	case "image/bmp":
		aliases = []string{"image/x-bmp", "image/x-ms-bmp"}
	case "audio/wave":
		aliases = []string{"audio/wav", "audio/x-wav", "audio/vnd.wave"}
	case "audio/mpeg":
		aliases = []string{"audio/mp3", "audio/mpeg3", "audio/x-mpeg"}
	case "audio/aiff":
		aliases = []string{"audio/x-aiff"}
	case "audio/midi":
		aliases = []string{"audio/x-midi", "audio/mid"}
	case "application/ogg":
		aliases = []string{"audio/ogg", "video/ogg", "audio/opus", "audio/x-ogg"}
	case "video/webm":
		aliases = []string{"audio/webm"}
	case "video/mp4":
		aliases = []string{"audio/mp4", "audio/m4a", "audio/x-m4a", "video/quicktime", "video/x-m4v", "video/3gpp"}
	case "video/avi":
		aliases = []string{"video/x-msvideo", "video/msvideo"}
	case "application/x-gzip":
		aliases = []string{"application/gzip", "application/x-compressed-tar"}
	case "application/zip":
		aliases = []string{"application/x-zip-compressed", "application/x-zip", "application/java-archive"}
	case "application/x-rar-compressed":
		aliases = []string{"application/vnd.rar", "application/x-rar"}
	}
	return slices.Contains(aliases, decl)
}

// consistent reports whether a declared type fits the sniffed one.
func consistent(decl, sniffed string) bool {
	if decl == sniffed || sniffed == octetStream {
		return true
	}
	if sniffAlias(sniffed, decl) {
		return true
	}
	switch sniffed {
	case "text/plain":
		// Plain text is what the sniffer reports for any text it has no
		// signature for (CSV, JSON, source, calendar, ...). Such bytes can
		// carry any textual type, but not an image or a video.
		major := majorType(decl)
		return major != "image" && major != "audio" && major != "video" && major != "font"
	case "text/xml":
		return decl == "application/xml" || strings.HasSuffix(decl, "+xml")
	case "application/zip":
		// Office documents, EPUB and friends are zip containers.
		return strings.HasPrefix(decl, "application/vnd.") || strings.HasSuffix(decl, "+zip")
	}
	return false
}

// scriptable reports whether a browser would run script or render active
// markup for content of type t.
func scriptable(t string) bool {
	switch t {
	case "text/html", "image/svg+xml", "application/xhtml+xml", "text/xml", "application/xml",
		"text/javascript", "application/javascript", "application/x-javascript", "text/ecmascript",
		"application/ecmascript", "application/wasm", "text/xsl", "application/xslt+xml",
		"application/rdf+xml", "application/mathml+xml", "multipart/x-mixed-replace",
		"application/x-shockwave-flash", "text/vtt":
		return true
	}
	return strings.HasSuffix(t, "+xml")
}

// inlineSafe reports whether content of type t may be shown inline: types a
// browser only displays and never executes.
func inlineSafe(t string) bool {
	switch t {
	case "image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/avif", "image/x-icon",
		"text/plain", "application/pdf":
		return true
	}
	major := majorType(t)
	return major == "audio" || major == "video"
}

// maxFilenameBytes bounds stored file names.
const maxFilenameBytes = 200

// sanitizeFilename turns a sender-supplied file name into one that is safe
// in a URL path segment and a Content-Disposition header: valid UTF-8, no
// directory part, no control or bidirectional-override characters, no
// surrounding space, at most maxFilenameBytes bytes (keeping a short
// extension). It may return "".
func sanitizeFilename(name string) string {
	name = strings.ToValidUTF8(name, "\uFFFD")
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || isBidiControl(r) {
			return -1
		}
		if unicode.IsSpace(r) {
			return ' '
		}
		return r
	}, name)
	name = strings.TrimSpace(name)
	if name == "." || name == ".." {
		return ""
	}
	if len(name) > maxFilenameBytes {
		ext := path.Ext(name)
		if len(ext) > 16 || !utf8.ValidString(ext) {
			ext = ""
		}
		base := truncateUTF8(strings.TrimSuffix(name, ext), maxFilenameBytes-len(ext))
		name = base + ext
	}
	return name
}

func isBidiControl(r rune) bool {
	return r == '\u061c' || r == '\u200e' || r == '\u200f' ||
		(r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069')
}

// truncateUTF8 cuts s to at most n bytes without splitting a rune.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// defaultExt gives a fallback file name an extension that previews key on.
func defaultExt(contentType string) string {
	switch contentType {
	case "image/png":
		return ".png"
	case "image/jpeg":
		return ".jpg"
	case "image/gif":
		return ".gif"
	case "image/webp":
		return ".webp"
	case "application/pdf":
		return ".pdf"
	case "text/plain":
		return ".txt"
	case "audio/mpeg":
		return ".mp3"
	case "video/mp4":
		return ".mp4"
	}
	return ""
}

// urlName is the file name that appears in the URL of rec and in its
// Content-Disposition header.
func urlName(rec *Record) string {
	if n := sanitizeFilename(rec.Filename); n != "" {
		return n
	}
	t, _, _ := mime.ParseMediaType(rec.ContentType)
	return "file" + defaultExt(t)
}
