package imapsync

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
)

// maxBodyChunk bounds the sum of RFC822.SIZE fetched by one body FETCH, so
// that a batch of large messages is not held in memory all at once.
const maxBodyChunk = 16 << 20

// bodySection is BODY.PEEK[]: the whole message, without setting \Seen.
var bodySection = imap.FetchItemBodySection{Peek: true}

// catchUp hands every message above the cursor to the Handler, in UID
// order. retry > 0 means the Handler (or the cursor store) failed and the
// rest must be tried again after retry; err is a connection error.
func (s *session) catchUp(ctx context.Context) (retry time.Duration, err error) {
	f := s.f
	o := &f.w.opts
	storedValidity, storedUID, err := o.Cursors.Cursor(ctx, f.name)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		retry = f.handlerBackoff.next()
		f.log.Warn("imap: reading cursor failed", "err", err, "retry_in", retry)
		return retry, nil
	}
	var from uint32
	switch {
	case storedValidity == 0:
		from = 0
	case storedValidity != s.validity:
		pair := [2]uint32{storedValidity, s.validity}
		if f.announced != pair {
			f.log.Info("imap: UIDVALIDITY differs from cursor, rescanning folder",
				"old", storedValidity, "new", s.validity)
			if err := o.Handler.UIDValidityChanged(ctx, f.name, storedValidity, s.validity); err != nil {
				if ctx.Err() != nil {
					return 0, ctx.Err()
				}
				retry = f.handlerBackoff.next()
				f.log.Warn("imap: handler refused UIDVALIDITY change", "old", storedValidity, "new", s.validity, "err", err, "retry_in", retry)
				return retry, nil
			}
			f.announced = pair
		}
		from = 0
	default:
		from = storedUID
	}
	if f.memValidity == s.validity && f.memUID > from {
		from = f.memUID
	}

	uids, err := s.searchAfter(from)
	if err != nil {
		return 0, err
	}
	if len(uids) > 0 {
		f.log.Debug("imap: catching up", "after_uid", from, "messages", len(uids))
	}
	for start := 0; start < len(uids); start += o.BatchSize {
		batch := uids[start:min(start+o.BatchSize, len(uids))]
		msgs, incomplete, err := s.fetchBatch(batch)
		if err != nil {
			return 0, err
		}
		for _, m := range msgs {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			if err := o.Handler.Handle(ctx, m); err != nil {
				if ctx.Err() != nil {
					return 0, ctx.Err()
				}
				retry = f.handlerBackoff.next()
				f.log.Warn("imap: handler failed, will retry the same message", "uid", m.UID, "err", err, "retry_in", retry)
				return retry, nil
			}
			f.memValidity, f.memUID = m.UIDValidity, m.UID
		}
		if incomplete {
			retry = f.handlerBackoff.next()
			f.log.Warn("imap: server sent no body for a message, searching again", "after_uid", f.memUID, "retry_in", retry)
			return retry, nil
		}
		if start+o.BatchSize < len(uids) {
			if err := s.applyActions(ctx); err != nil {
				return 0, err
			}
		}
	}
	f.handlerBackoff.reset()
	return 0, nil
}

// searchAfter returns the UIDs greater than after, ascending.
func (s *session) searchAfter(after uint32) ([]imap.UID, error) {
	if after == math.MaxUint32 {
		return nil, nil
	}
	criteria := &imap.SearchCriteria{
		UID: []imap.UIDSet{{imap.UIDRange{Start: imap.UID(after + 1), Stop: 0}}},
	}
	s.wd.arm()
	data, err := s.c.UIDSearch(criteria, nil).Wait()
	s.wd.disarm()
	if err != nil {
		return nil, fmt.Errorf("uid search %d:*: %w", after+1, err)
	}
	return uidsAfter(data.AllUIDs(), after), nil
}

// uidsAfter keeps the UIDs greater than after, sorted and without
// duplicates. "N:*" always matches the last message, even below N.
func uidsAfter(all []imap.UID, after uint32) []imap.UID {
	out := make([]imap.UID, 0, len(all))
	for _, u := range all {
		if uint32(u) > after {
			out = append(out, u)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// fetchBatch fetches the metadata of uids, then the bodies of those not
// over MaxMessageSize. The result is in UID order. Messages gone before
// their metadata was fetched are left out; when a body is missing, the
// result stops before that message and incomplete is set.
func (s *session) fetchBatch(uids []imap.UID) (msgs []*Message, incomplete bool, err error) {
	f := s.f
	o := &f.w.opts
	set := imap.UIDSetNum(uids...)

	s.wd.arm()
	defer s.wd.disarm()
	metaCmd := s.c.Fetch(set, &imap.FetchOptions{
		UID:          true,
		RFC822Size:   true,
		InternalDate: true,
		Flags:        true,
	})
	byUID := make(map[uint32]*Message, len(uids))
	for {
		data := metaCmd.Next()
		if data == nil {
			break
		}
		buf, err := data.Collect()
		if err != nil {
			metaCmd.Close()
			return nil, false, fmt.Errorf("uid fetch %v: %w", set, err)
		}
		s.wd.arm()
		if buf.UID == 0 {
			continue
		}
		byUID[uint32(buf.UID)] = &Message{
			Folder:       f.name,
			UIDValidity:  s.validity,
			UID:          uint32(buf.UID),
			Size:         buf.RFC822Size,
			InternalDate: buf.InternalDate,
			Flags:        buf.Flags,
			TooLarge:     o.MaxMessageSize > 0 && buf.RFC822Size > o.MaxMessageSize,
		}
	}
	if err := metaCmd.Close(); err != nil {
		return nil, false, fmt.Errorf("uid fetch %v: %w", set, err)
	}

	msgs = make([]*Message, 0, len(byUID))
	for _, m := range byUID {
		msgs = append(msgs, m)
	}
	slices.SortFunc(msgs, func(a, b *Message) int { return cmp.Compare(a.UID, b.UID) })

	// Fetch bodies in chunks bounded by maxBodyChunk.
	var chunk []*Message
	var chunkSize int64
	gotBody := make(map[uint32]bool, len(msgs))
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		var cs imap.UIDSet
		for _, m := range chunk {
			cs.AddNum(imap.UID(m.UID))
		}
		chunk, chunkSize = chunk[:0], 0
		s.wd.arm()
		cmd := s.c.Fetch(cs, &imap.FetchOptions{
			UID:         true,
			BodySection: []*imap.FetchItemBodySection{&bodySection},
		})
		for {
			data := cmd.Next()
			if data == nil {
				break
			}
			buf, err := data.Collect()
			if err != nil {
				cmd.Close()
				return fmt.Errorf("uid fetch body %v: %w", cs, err)
			}
			s.wd.arm()
			if m := byUID[uint32(buf.UID)]; m != nil && !m.TooLarge {
				for _, sec := range buf.BodySection {
					if sec.Section != nil && sec.Section.Specifier == imap.PartSpecifierNone && len(sec.Section.Part) == 0 {
						m.Raw = sec.Bytes
						if m.Raw == nil {
							m.Raw = []byte{}
						}
						gotBody[m.UID] = true
					}
				}
			}
		}
		if err := cmd.Close(); err != nil {
			return fmt.Errorf("uid fetch body %v: %w", cs, err)
		}
		return nil
	}
	for _, m := range msgs {
		if m.TooLarge {
			continue
		}
		if len(chunk) > 0 && chunkSize+m.Size > maxBodyChunk {
			if err := flush(); err != nil {
				return nil, false, err
			}
		}
		chunk = append(chunk, m)
		chunkSize += m.Size
	}
	if err := flush(); err != nil {
		return nil, false, err
	}

	for i, m := range msgs {
		if !m.TooLarge && !gotBody[m.UID] {
			// Most likely expunged between the two FETCHes. Stop before
			// it: the next UID SEARCH tells whether it still exists.
			return msgs[:i], true, nil
		}
	}
	return msgs, false, nil
}
