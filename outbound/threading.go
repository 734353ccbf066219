package outbound

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"mailgate/mailtext"
	"strings"
	"time"

	"mailgate/store"
)

// MaxReferences is the most Message-IDs a reply's References header lists:
// the thread's first and the newest ones.
const MaxReferences = 20

// maxThreadIndexChildren caps the 5-byte child blocks of a Thread-Index.
const maxThreadIndexChildren = 100

// ThreadHeaders are the headers that put a reply into the customer's
// conversation. Message-IDs are without angle brackets.
type ThreadHeaders struct {
	// MessageID is the reply's own id.
	MessageID string
	// InReplyTo is the customer's latest message (our latest when the
	// customer has written none); "" for a new thread.
	InReplyTo string
	// References is the thread, oldest first, capped at MaxReferences
	// keeping the first id and the newest.
	References []string
	// Subject is "Re: " and the thread's subject, or the new-thread subject.
	Subject string
	// ThreadTopic is the normalised subject (Outlook's Thread-Topic).
	ThreadTopic string
	// ThreadIndex is Outlook's Thread-Index, base64.
	ThreadIndex string
}

// ReplyThreadOptions are the inputs of ReplyHeaders besides the thread.
type ReplyThreadOptions struct {
	// MessageID is the new reply's Message-ID (from msgid.Generator.New).
	MessageID string
	// NewSubject is the subject when the thread has none, for example
	// DefaultNewSubject of the channel's name.
	NewSubject string
	// Written is when the reply was written; it dates the reply's
	// Thread-Index block. The zero time means the thread's start.
	Written time.Time
	// Opens says that the thread was started for this reply (the contact
	// had none): its subject is used as is, without "Re: ".
	Opens bool
}

// DefaultNewSubject is the subject of a reply that starts a conversation
// (the contact has no thread): "Your message to <name>".
func DefaultNewSubject(name string) string {
	name = strings.Join(strings.Fields(name), " ")
	if name == "" {
		return "Your message"
	}
	return "Your message to " + name
}

// ReplyHeaders computes the threading headers of a reply to th, the
// contact's current thread (nil when there is none).
//
// The Thread-Index is derived from the thread alone, so every reply of a
// thread carries the same 22-byte header: its time is the thread's start
// and its GUID the first 16 bytes of SHA-256 of the thread's first
// Message-ID (of this reply's when the thread has none yet). After it comes
// one 5-byte child block per earlier reply of ours except the first,
// dated when that reply joined the thread, and one for this reply, dated
// opts.Written; a reply that opens the thread has the header only. Outlook
// groups by the header; the blocks order the messages.
func ReplyHeaders(th *store.Thread, opts ReplyThreadOptions) ThreadHeaders {
	h := ThreadHeaders{MessageID: bare(opts.MessageID)}
	var subject string
	var ids []string
	var start time.Time
	var ours []time.Time
	if th != nil {
		subject = th.Subject
		h.InReplyTo = bare(th.LastCustomerID)
		if h.InReplyTo == "" {
			h.InReplyTo = bare(th.LastOurID)
		}
		for _, m := range th.Messages {
			if id := bare(m.MessageID); id != "" {
				ids = append(ids, id)
				if m.Ours {
					ours = append(ours, m.AddedAt)
				}
			}
		}
		if len(th.Messages) == 0 {
			for _, id := range th.MessageIDs {
				if id = bare(id); id != "" {
					ids = append(ids, id)
				}
			}
		}
		start = th.CreatedAt
	}
	h.References = capReferences(ids, MaxReferences)
	newSubject := strings.Join(strings.Fields(opts.NewSubject), " ")
	if opts.Opens {
		if subject == "" {
			subject = newSubject
		}
		h.Subject = strings.Join(strings.Fields(subject), " ")
	} else {
		h.Subject = mailtext.ReplySubject(subject, newSubject)
	}
	h.ThreadTopic = mailtext.NormalizeSubject(h.Subject)

	first := h.MessageID
	if len(ids) > 0 {
		first = ids[0]
	}
	if start.IsZero() {
		start = opts.Written
	}
	written := opts.Written
	if written.IsZero() {
		written = start
	}
	var children []time.Time
	if len(ours) > 0 {
		children = append(ours[1:len(ours):len(ours)], written)
	}
	h.ThreadIndex = base64.StdEncoding.EncodeToString(threadIndex(start, first, children))
	return h
}

// bare removes white space and the angle brackets around a Message-ID.
func bare(id string) string {
	id = strings.TrimSpace(id)
	id = strings.TrimPrefix(id, "<")
	return strings.TrimSuffix(id, ">")
}

// capReferences keeps the first id and the newest max-1 ids.
func capReferences(ids []string, limit int) []string {
	if len(ids) <= limit {
		return ids
	}
	out := make([]string, 0, limit)
	out = append(out, ids[0])
	return append(out, ids[len(ids)-(limit-1):]...)
}

// filetimeEpoch is 1970-01-01 in FILETIME units (100 ns since 1601).
const filetimeEpoch = 116444736000000000

// filetime converts t to a Windows FILETIME.
func filetime(t time.Time) uint64 {
	if t.IsZero() || t.Unix() < 0 {
		return filetimeEpoch
	}
	return uint64(t.Unix())*10_000_000 + uint64(t.Nanosecond()/100) + filetimeEpoch
}

// threadIndex builds an Outlook Thread-Index (PidTagConversationIndex): a
// 22-byte header (the six most significant bytes of start's FILETIME, then
// a 16-byte GUID from the SHA-256 of firstID) and a 5-byte block per child.
// A block is 1 bit format (0: the time difference to start in units of
// 2^18 * 100 ns, 1: in units of 2^23 * 100 ns, for differences over about
// 1.78 years), 31 bits of that difference, and one byte that the format
// leaves to the writer (here the low byte of the hash, plus the block's
// position, so that the index is deterministic).
func threadIndex(start time.Time, firstID string, children []time.Time) []byte {
	if len(children) > maxThreadIndexChildren {
		children = children[len(children)-maxThreadIndexChildren:]
	}
	out := make([]byte, 22, 22+5*len(children))
	var ft [8]byte
	base := filetime(start)
	binary.BigEndian.PutUint64(ft[:], base)
	copy(out, ft[:6])
	sum := sha256.Sum256([]byte(firstID))
	copy(out[6:], sum[:16])
	for i, c := range children {
		var delta uint64
		if ct := filetime(c); ct > base {
			delta = ct - base
		}
		var v uint32
		if delta < 1<<49 {
			v = uint32(delta >> 18)
		} else {
			v = 1<<31 | uint32(min(delta>>23, 1<<31-1))
		}
		var b [5]byte
		binary.BigEndian.PutUint32(b[:4], v)
		b[4] = sum[16]&0xf0 | byte(i)&0x0f
		out = append(out, b[:]...)
	}
	return out
}
