package imapsync

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
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
	pl := startPipeline(ctx, f)
	var connErr error
	incomplete := false
	for start := 0; start < len(uids); start += o.BatchSize {
		batch := uids[start:min(start+o.BatchSize, len(uids))]
		var msgs []*Message
		msgs, incomplete, connErr = s.fetchBatch(batch)
		if connErr != nil || !pl.feed(msgs) || incomplete {
			break
		}
		if start+o.BatchSize < len(uids) {
			if connErr = s.applyActions(ctx); connErr != nil {
				break
			}
		}
	}
	failed, handlerErr := pl.finish()
	switch {
	case ctx.Err() != nil:
		return 0, ctx.Err()
	case connErr != nil:
		return 0, connErr
	case handlerErr != nil:
		retry = f.handlerBackoff.next()
		f.log.Warn("imap: handler failed, will retry the same message", "uid", failed, "err", handlerErr, "retry_in", retry)
		return retry, nil
	case incomplete:
		retry = f.handlerBackoff.next()
		f.log.Warn("imap: server sent no body for a message, searching again", "after_uid", f.memUID, "retry_in", retry)
		return retry, nil
	}
	f.handlerBackoff.reset()
	return 0, nil
}

// pipeline hands fetched messages to the Handler in UID order on its own
// goroutine, so that the next batch is fetched meanwhile, and runs a
// Preparer's Prepare on up to PrepareWorkers goroutines ahead of Handle.
// At most one batch waits between the fetching and the handling goroutine.
type pipeline struct {
	ctx   context.Context
	f     *folderWatcher
	prep  Preparer      // nil when the Handler is no Preparer
	work  chan *pending // to the prepare workers
	order chan *pending // to the handling goroutine, in UID order
	stop  chan struct{} // closed when the handling goroutine gives up
	wg    sync.WaitGroup

	// Set by the handling goroutine, read after wg.Wait.
	failedUID uint32
	err       error
}

// pending is a fetched message on its way to Handle.
type pending struct {
	m        *Message
	prepared chan struct{} // closed once Prepare returned or was skipped
}

func startPipeline(ctx context.Context, f *folderWatcher) *pipeline {
	o := &f.w.opts
	p := &pipeline{
		ctx:   ctx,
		f:     f,
		order: make(chan *pending, o.BatchSize),
		stop:  make(chan struct{}),
	}
	p.prep, _ = o.Handler.(Preparer)
	if p.prep != nil {
		p.work = make(chan *pending, o.BatchSize)
		for range o.PrepareWorkers {
			p.wg.Go(p.prepare)
		}
	}
	p.wg.Go(p.handle)
	return p
}

// feed queues msgs, in UID order, and reports false once the handling
// goroutine has given up or ctx is done: nothing more should be fetched.
func (p *pipeline) feed(msgs []*Message) bool {
	for _, m := range msgs {
		pd := &pending{m: m, prepared: make(chan struct{})}
		select {
		case p.order <- pd:
		case <-p.stop:
			return false
		case <-p.ctx.Done():
			return false
		}
		if p.prep == nil {
			close(pd.prepared)
			continue
		}
		select {
		case p.work <- pd:
		case <-p.stop:
			return false
		case <-p.ctx.Done():
			return false
		}
	}
	return true
}

// finish waits until every queued message is handled, or the handling
// stopped, and returns the UID and error of the Handle that failed.
func (p *pipeline) finish() (failedUID uint32, err error) {
	close(p.order)
	if p.work != nil {
		close(p.work)
	}
	p.wg.Wait()
	return p.failedUID, p.err
}

func (p *pipeline) prepare() {
	for pd := range p.work {
		select {
		case <-p.stop:
		case <-p.ctx.Done():
		default:
			p.prep.Prepare(p.ctx, pd.m)
		}
		close(pd.prepared)
	}
}

func (p *pipeline) handle() {
	h := p.f.w.opts.Handler
	for pd := range p.order {
		if p.err != nil {
			continue // drain
		}
		select {
		case <-pd.prepared:
		case <-p.ctx.Done():
		}
		err := p.ctx.Err()
		if err == nil {
			err = h.Handle(p.ctx, pd.m)
		}
		if err != nil {
			p.failedUID, p.err = pd.m.UID, err
			close(p.stop)
			continue
		}
		p.f.memValidity, p.f.memUID = pd.m.UIDValidity, pd.m.UID
	}
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
