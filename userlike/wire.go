package userlike

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"mailgate/mailaddr"
)

// This file holds every decision about the JSON that crosses the wire between
// mailgate and Userlike's Custom Channel. Change the schema here and only here.

// ErrNoContact is returned by DecodeOutbound for a message payload (one with
// text or a media URL) that carries no contact address.
var ErrNoContact = errors.New("userlike: outbound message has no contact address")

// InboundMessage is one chat message mailgate posts to the Inbound URL.
// Exactly one of Text and URL is set: an email becomes one text message
// followed by one media message per attachment.
type InboundMessage struct {
	// Email identifies the contact: the verified sender address, which the
	// caller has already lower-cased.
	Email string `json:"email"`
	// Name is the sender's display name in UTF-8; omitted when empty.
	Name string `json:"name,omitempty"`
	// Text is the new text of the email.
	Text string `json:"text,omitempty"`
	// URL points at a media file Userlike fetches and stores.
	URL string `json:"url,omitempty"`
}

// Marshal validates m and encodes it as the compact JSON body of an inbound
// POST. Email must be set with its ASCII letters already lower-case (mailaddr.Key), and exactly one of Text
// and URL must be set. HTML characters are not escaped, so URLs stay
// readable.
func (m InboundMessage) Marshal() ([]byte, error) {
	switch {
	case strings.TrimSpace(m.Email) == "":
		return nil, errors.New("userlike: inbound message: email is required")
	case m.Email != mailaddr.LowerASCII(m.Email):
		return nil, fmt.Errorf("userlike: inbound message: email %q is not lower-case", m.Email)
	case m.Text == "" && m.URL == "":
		return nil, fmt.Errorf("userlike: inbound message for %q: neither text nor url is set", m.Email)
	case m.Text != "" && m.URL != "":
		return nil, fmt.Errorf("userlike: inbound message for %q: both text and url are set", m.Email)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("userlike: inbound message for %q: %w", m.Email, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Outbound is an operator message (or another event) decoded from a
// webhook POST by DecodeOutbound.
type Outbound struct {
	// Contact is the contact's address, trimmed and lower-cased.
	Contact string
	// Text is the message text, if any.
	Text string
	// MediaURL is the URL of an attached media file, if any.
	MediaURL string
	// Operator is the sending operator's display name, if given.
	Operator string
	// ID is Userlike's message id, if given; numbers are kept in their
	// decimal JSON spelling.
	ID string
	// Event is the event name, if given (API v2 "message.event").
	Event string
	// Deleted is set when the operator deleted the message.
	Deleted bool
	// IDFromHash is set when the payload carried no message id, so
	// DedupeKey falls back to a content hash.
	IDFromHash bool
}

// Key paths the outbound decoder tries, first match wins, as the table in
// the Custom Channel contract lists them. Read-only.
var (
	contactPaths  = [][]string{{"email"}, {"contact", "email"}, {"contact_identifier"}, {"contact", "identifier"}, {"message", "email"}}
	textPaths     = [][]string{{"text"}, {"message", "text"}, {"body"}, {"message", "body"}}
	mediaURLPaths = [][]string{{"url"}, {"message", "url"}, {"media", "url"}, {"message", "media", "url"}}
	operatorPaths = [][]string{{"operator_name"}, {"operator", "name"}, {"message", "operator", "name"}, {"sender", "name"}}
	idPaths       = [][]string{{"id"}, {"message_id"}, {"message", "id"}, {"uuid"}, {"message", "uuid"}}
	eventPaths    = [][]string{{"event"}, {"message", "event"}}
	deletedPaths  = [][]string{{"is_deleted"}, {"message", "is_deleted"}}
)

// DecodeOutbound decodes a webhook body leniently. The body must be a single
// JSON object; its fields may be flat or nested in "message", "contact",
// "operator", "media" or "sender" objects, and unknown fields are ignored.
// For each field the first key that holds a usable, non-empty value wins.
// Ids may be strings or numbers; the deleted flag may be true, "true" or 1.
//
// A payload that is not a JSON object is an error. A message payload (see
// IsMessage) without a contact address yields ErrNoContact. A payload with
// neither text nor media URL, such as a bare event, decodes without error.
func DecodeOutbound(body []byte) (*Outbound, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("userlike: decode outbound payload (%d bytes): %w", len(body), err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("userlike: decode outbound payload (%d bytes): data after the JSON object", len(body))
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("userlike: decode outbound payload: got %s, want a JSON object", jsonKind(v))
	}
	o := &Outbound{
		Contact:  mailaddr.Key(firstString(obj, contactPaths)),
		Text:     firstString(obj, textPaths),
		MediaURL: strings.TrimSpace(firstString(obj, mediaURLPaths)),
		Operator: firstString(obj, operatorPaths),
		ID:       strings.TrimSpace(firstID(obj, idPaths)),
		Event:    firstString(obj, eventPaths),
		Deleted:  firstBool(obj, deletedPaths),
	}
	o.IDFromHash = o.ID == ""
	if o.IsMessage() && o.Contact == "" {
		return nil, ErrNoContact
	}
	return o, nil
}

// IsMessage reports whether o carries something to mail: text or a media
// URL.
func (o *Outbound) IsMessage() bool {
	return o.Text != "" || o.MediaURL != ""
}

// DedupeBucket is the width of the time bucket DedupeKey hashes when a
// payload has no message id: the same content for the same contact within
// one bucket is treated as one message.
const DedupeBucket = 10 * time.Minute

// DedupeKey returns the idempotency key of o: "id:" followed by the message
// id, or, without an id, "hash:" followed by the hex SHA-256 of the contact,
// the text, the media URL and the DedupeBucket-wide time bucket holding now.
func (o *Outbound) DedupeKey(now time.Time) string {
	if o.ID != "" {
		return "id:" + o.ID
	}
	bucket := now.Unix() / int64(DedupeBucket/time.Second)
	if now.Unix() < 0 && now.Unix()%int64(DedupeBucket/time.Second) != 0 {
		bucket-- // floor, not truncation, before 1970
	}
	h := sha256.New()
	var n [8]byte
	for _, s := range []string{o.Contact, o.Text, o.MediaURL} {
		// Length prefixes keep ("ab", "c") apart from ("a", "bc").
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		io.WriteString(h, s)
	}
	binary.BigEndian.PutUint64(n[:], uint64(bucket))
	h.Write(n[:])
	return "hash:" + hex.EncodeToString(h.Sum(nil))
}

// lookup follows path through nested objects and returns the value found.
func lookup(obj map[string]any, path []string) (any, bool) {
	var cur any = obj
	for _, key := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[key]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func firstString(obj map[string]any, paths [][]string) string {
	for _, p := range paths {
		if v, ok := lookup(obj, p); ok {
			if s, ok := v.(string); ok && strings.TrimSpace(s) != "" {
				return s
			}
		}
	}
	return ""
}

func firstID(obj map[string]any, paths [][]string) string {
	for _, p := range paths {
		v, ok := lookup(obj, p)
		if !ok {
			continue
		}
		switch v := v.(type) {
		case string:
			if strings.TrimSpace(v) != "" {
				return v
			}
		case json.Number:
			return v.String()
		}
	}
	return ""
}

// firstBool returns the first flag present: true, "true" (any case), 1 and
// "1" are true; any other value present is false.
func firstBool(obj map[string]any, paths [][]string) bool {
	for _, p := range paths {
		v, ok := lookup(obj, p)
		if !ok || v == nil {
			continue
		}
		switch v := v.(type) {
		case bool:
			return v
		case string:
			s := strings.TrimSpace(v)
			return strings.EqualFold(s, "true") || s == "1"
		case json.Number:
			f, err := v.Float64()
			return err == nil && f == 1
		default:
			return false
		}
	}
	return false
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// sensitiveKeyParts are the substrings that make RedactPayload drop a key.
// Read-only.
var sensitiveKeyParts = []string{"token", "secret", "password", "api_key", "authorization"}

func isSensitiveKey(key string) bool {
	k := strings.ToLower(key)
	for _, part := range sensitiveKeyParts {
		if strings.Contains(k, part) {
			return true
		}
	}
	return false
}

// RedactPayload returns body as compact JSON without any object member
// whose key contains "token", "secret", "password", "api_key" or
// "authorization" (case-insensitive), at any depth, for debug logging.
// Key order and number spelling are kept, so the log shows the shape
// Userlike sent. A body that is not valid JSON is replaced by a short
// placeholder, since it cannot be redacted reliably, and so is one nested
// deeper than MaxRedactDepth. The body is validated first, by a scanner
// that needs no recursion, so that hostile nesting costs no memory.
func RedactPayload(body []byte) []byte {
	if !json.Valid(body) {
		return fmt.Appendf(nil, "<unparsable payload of %d bytes withheld>", len(body))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var out bytes.Buffer
	if err := redactValue(dec, &out, 0); err != nil {
		return fmt.Appendf(nil, "<unparsable payload of %d bytes withheld>", len(body))
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Appendf(nil, "<unparsable payload of %d bytes withheld>", len(body))
	}
	return out.Bytes()
}

// MaxRedactDepth is the deepest nesting of arrays and objects RedactPayload
// copies; Userlike's payloads are a few levels deep.
const MaxRedactDepth = 32

// redactValue copies one JSON value from dec to out, dropping sensitive
// object members; depth is the nesting of the value.
func redactValue(dec *json.Decoder, out *bytes.Buffer, depth int) error {
	if depth > MaxRedactDepth {
		return fmt.Errorf("nested deeper than %d", MaxRedactDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			out.WriteByte('{')
			first := true
			for dec.More() {
				keyTok, err := dec.Token()
				if err != nil {
					return err
				}
				key, ok := keyTok.(string)
				if !ok {
					return fmt.Errorf("object key is %T", keyTok)
				}
				if isSensitiveKey(key) {
					var skip json.RawMessage
					if err := dec.Decode(&skip); err != nil {
						return err
					}
					continue
				}
				if !first {
					out.WriteByte(',')
				}
				first = false
				writeJSONString(out, key)
				out.WriteByte(':')
				if err := redactValue(dec, out, depth+1); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil { // '}'
				return err
			}
			out.WriteByte('}')
		case '[':
			out.WriteByte('[')
			for i := 0; dec.More(); i++ {
				if i > 0 {
					out.WriteByte(',')
				}
				if err := redactValue(dec, out, depth+1); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil { // ']'
				return err
			}
			out.WriteByte(']')
		default:
			return fmt.Errorf("unexpected delimiter %v", t)
		}
	case string:
		writeJSONString(out, t)
	case json.Number:
		out.WriteString(t.String())
	case bool:
		if t {
			out.WriteString("true")
		} else {
			out.WriteString("false")
		}
	case nil:
		out.WriteString("null")
	default:
		return fmt.Errorf("unexpected token %T", tok)
	}
	return nil
}

func writeJSONString(out *bytes.Buffer, s string) {
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	enc.Encode(s) // a string always encodes
	out.Truncate(out.Len() - 1)
}
