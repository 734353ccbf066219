package imapsync

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// maxBodyChunk bounds the sum of RFC822.SIZE fetched by one body FETCH, so
// that a batch of large messages is not held in memory all at once.
const maxBodyChunk = 16 << 20

// maxQueuedBytes bounds the bodies fetched but not yet handled; a single
// larger message still passes alone. With the chunk being fetched, a
// folder holds at most about maxQueuedBytes + maxBodyChunk of mail.
const maxQueuedBytes = 2 * maxBodyChunk

// bodySection is BODY.PEEK[]: the whole message, without setting \Seen.
var bodySection = imap.FetchItemBodySection{Peek: true}

// catchUp hands every message above the cursor to the Handler, in UID
// order, then the messages a RefetchSource asks for again. retry > 0 means
// the Handler (or the cursor store) failed and the rest must be tried
// again after retry; err is a connection error.
func (s *session) catchUp(ctx context.Context) (retry time.Duration, err error) {
	f := s.f
	o := &f.w.opts
	cur, err := o.Cursors.Cursor(ctx, f.name)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		retry = f.handlerBackoff.next()
		f.log.Warn("imap: reading cursor failed", "err", err, "retry_in", retry)
		return retry, nil
	}
	storedValidity := cur.UIDValidity
	if storedValidity != 0 && storedValidity != s.validity {
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
	}
	if storedValidity != s.validity && !o.Start.All {
		start, err := s.startPoint(o.Start, o.Now())
		if err != nil {
			return 0, err
		}
		if err := o.Cursors.StartFolder(ctx, f.name, start); err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			retry = f.handlerBackoff.next()
			f.log.Warn("imap: recording the folder's start point failed", "err", err, "retry_in", retry)
			return retry, nil
		}
		f.log.Info("imap: reading starts here; older mail of the folder is history and is not posted",
			"uidvalidity", s.validity, "after_uid", start.UID, "history", start.History)
		cur, storedValidity = start, start.UIDValidity
	}
	var from uint32
	if storedValidity == s.validity {
		from = cur.UID
	}
	s.history = cur
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
	if retry, err := s.hand(ctx, uids); retry > 0 || err != nil {
		return retry, err
	}
	if storedValidity != s.validity {
		return 0, nil // the refetches wait for the cursor's UIDVALIDITY
	}
	return s.refetch(ctx)
}

// hand fetches uids, ascending, and hands them to the Handler in order.
// retry > 0 means the Handler failed or the server sent no body, and the
// rest must be tried again after retry; err is a connection error.
func (s *session) hand(ctx context.Context, uids []imap.UID) (retry time.Duration, err error) {
	f := s.f
	o := &f.w.opts
	pl := startPipeline(ctx, f)
	var connErr error
	incomplete := false
	for start := 0; start < len(uids); start += o.BatchSize {
		batch := uids[start:min(start+o.BatchSize, len(uids))]
		incomplete, connErr = s.fetchBatch(batch, pl.feed)
		if connErr != nil || incomplete || pl.stopped() {
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

// Bounds of the refetches a RefetchSource asks for.
const (
	maxRefetchTries = 3   // tries to fetch one message again before giving up
	maxRefetchBatch = 100 // UIDs per pass, and so per UID SEARCH
)

// refetch hands again the messages that Options.Refetches asks for, after the new mail. Those the folder no longer
// holds, and those that failed maxRefetchTries times (a body too slow to
// fetch, say), are given up and reported, so that a refetch never holds up
// the folder for long. Its results are those of hand.
func (s *session) refetch(ctx context.Context) (retry time.Duration, err error) {
	f := s.f
	src := f.w.opts.Refetches
	if src == nil {
		return 0, nil
	}
	want, err := src.Refetches(ctx, f.name, s.validity)
	if err != nil {
		f.log.Warn("imap: reading the messages to fetch again failed", "err", err)
		return 0, nil
	}
	if len(want) == 0 {
		clear(f.refetchTries)
		return 0, nil
	}
	var given []uint32
	want = slices.DeleteFunc(want, func(u uint32) bool {
		if f.refetchTries[[2]uint32{s.validity, u}] >= maxRefetchTries {
			given = append(given, u)
			return true
		}
		return false
	})
	s.refetchFailed(ctx, src, given, fmt.Sprintf("the email could not be fetched and recorded again in %d tries", maxRefetchTries))
	want = want[:min(len(want), maxRefetchBatch)]
	if len(want) == 0 {
		return 0, nil
	}
	var set imap.UIDSet
	for _, u := range want {
		set.AddNum(imap.UID(u))
		f.refetchTries[[2]uint32{s.validity, u}]++
	}
	s.wd.arm()
	data, err := s.c.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{set}}, nil).Wait()
	s.wd.disarm()
	var refused *imap.Error
	if errors.As(err, &refused) {
		f.log.Warn("imap: searching the messages to fetch again failed", "uids", want, "err", err)
		return f.handlerBackoff.next(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("uid search %v: %w", set, err)
	}
	found := data.AllUIDs()
	slices.Sort(found)
	found = slices.Compact(found)
	var gone []uint32
	for _, u := range want {
		if !slices.Contains(found, imap.UID(u)) {
			gone = append(gone, u)
		}
	}
	s.refetchFailed(ctx, src, gone, "the email is no longer in "+f.name)
	if len(found) == 0 {
		return 0, nil
	}
	f.log.Info("imap: fetching messages again", "uids", found)
	if retry, err = s.hand(ctx, found); retry == 0 && err == nil {
		for _, u := range found {
			delete(f.refetchTries, [2]uint32{s.validity, uint32(u)})
		}
	}
	return retry, err
}

// refetchFailed gives up refetching uids, with why.
func (s *session) refetchFailed(ctx context.Context, src RefetchSource, uids []uint32, why string) {
	if len(uids) == 0 {
		return
	}
	f := s.f
	f.log.Warn("imap: giving up fetching messages again", "uids", uids, "why", why)
	if err := src.RefetchFailed(ctx, f.name, s.validity, uids, why); err != nil {
		f.log.Warn("imap: recording that messages cannot be fetched again failed", "uids", uids, "err", err)
		return
	}
	for _, u := range uids {
		delete(f.refetchTries, [2]uint32{s.validity, u})
	}
}

// pipeline hands fetched messages to the Handler in UID order on its own
// goroutine, so that the next chunk is fetched meanwhile, and runs a
// Preparer's Prepare on up to PrepareWorkers goroutines ahead of Handle.
// Between the fetching and the handling goroutine wait at most BatchSize
// messages and maxQueuedBytes of bodies (or one larger message).
type pipeline struct {
	ctx   context.Context
	f     *folderWatcher
	prep  Preparer      // nil when the Handler is no Preparer
	work  chan *pending // to the prepare workers
	order chan *pending // to the handling goroutine, in UID order
	stop  chan struct{} // closed when the handling goroutine gives up
	wg    sync.WaitGroup

	queued atomic.Int64  // bytes of bodies fed and not yet handled
	freed  chan struct{} // poked when a handled message frees bytes

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
		freed: make(chan struct{}, 1),
	}
	p.prep = o.Preparer
	if p.prep != nil {
		p.work = make(chan *pending, o.BatchSize)
		for range o.PrepareWorkers {
			p.wg.Go(p.prepare)
		}
	}
	p.wg.Go(p.handle)
	return p
}

// feed queues msgs, in UID order, waiting while the queued bodies would
// exceed the budget, and reports false once the handling goroutine has
// given up or ctx is done: nothing more should be fetched.
func (p *pipeline) feed(msgs []*Message) bool {
	for _, m := range msgs {
		size := int64(len(m.Raw))
		for q := p.queued.Load(); q > 0 && q+size > p.f.w.maxQueuedBytes; q = p.queued.Load() {
			select {
			case <-p.freed:
			case <-p.stop:
				return false
			case <-p.ctx.Done():
				return false
			}
		}
		p.queued.Add(size)
		pd := &pending{m: m, prepared: make(chan struct{})}
		if !p.send(p.order, pd) {
			return false
		}
		if p.prep == nil {
			close(pd.prepared)
		} else if !p.send(p.work, pd) {
			return false
		}
	}
	return true
}

// send sends pd on ch, unless the pipeline stops first.
func (p *pipeline) send(ch chan<- *pending, pd *pending) bool {
	select {
	case ch <- pd:
		return true
	case <-p.stop:
	case <-p.ctx.Done():
	}
	return false
}

// stopped reports whether the handling goroutine has given up or ctx is
// done.
func (p *pipeline) stopped() bool {
	select {
	case <-p.stop:
		return true
	case <-p.ctx.Done():
		return true
	default:
		return false
	}
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
	bh, _ := h.(BatchHandler)
	for pd := range p.order {
		batch := []*pending{pd}
		if bh != nil && p.err == nil {
			select {
			case <-pd.prepared:
			case <-p.ctx.Done():
			}
			batch = p.gather(batch)
		}
		if len(batch) == 1 {
			p.handleOne(h, pd)
		} else {
			p.handleBatch(bh, batch)
		}
		var size int64
		for _, pd := range batch {
			size += int64(len(pd.m.Raw))
		}
		p.queued.Add(-size)
		select {
		case p.freed <- struct{}{}:
		default:
		}
	}
}

// gather adds to batch, up to BatchSize, the messages queued behind it,
// each once it is prepared: the Handler records them together while the
// next ones are fetched and prepared. It does not wait for messages that
// are not queued yet, so a message that arrives alone is handed alone.
func (p *pipeline) gather(batch []*pending) []*pending {
	for len(batch) < p.f.w.opts.BatchSize {
		select {
		case pd, ok := <-p.order:
			if !ok {
				return batch
			}
			select {
			case <-pd.prepared:
			case <-p.ctx.Done():
			}
			batch = append(batch, pd)
		default:
			return batch
		}
	}
	return batch
}

// handleBatch hands the prepared messages of batch to h at once, unless
// an earlier message failed.
func (p *pipeline) handleBatch(h BatchHandler, batch []*pending) {
	if p.err != nil {
		return // drain
	}
	msgs := make([]*Message, len(batch))
	for i, pd := range batch {
		msgs[i] = pd.m
	}
	n, err := 0, p.ctx.Err()
	if err == nil {
		n, err = h.HandleBatch(p.ctx, msgs)
	}
	if err == nil && n != len(msgs) {
		err = fmt.Errorf("imapsync: handler recorded %d of %d messages and gave no reason", n, len(msgs))
	}
	n = max(0, min(n, len(msgs)))
	if err != nil && n == len(msgs) {
		n-- // the last one is handed again; a Handler records a repeat as one
	}
	for _, m := range msgs[:n] {
		p.handled(m)
	}
	if err != nil {
		p.failedUID, p.err = msgs[n].UID, err
		close(p.stop)
	}
}

// handleOne waits for pd's Prepare and hands it to h, unless an earlier
// message failed.
func (p *pipeline) handleOne(h Handler, pd *pending) {
	if p.err != nil {
		return // drain
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
		return
	}
	p.handled(pd.m)
}

// handled notes that m is recorded.
func (p *pipeline) handled(m *Message) {
	if p.f.memValidity != m.UIDValidity || m.UID > p.f.memUID { // refetched UIDs lie below
		p.f.memValidity, p.f.memUID = m.UIDValidity, m.UID
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
// over MaxMessageSize in chunks of at most maxBodyChunk bytes, and hands
// each chunk's messages to emit, in UID order, as soon as it has them; it
// stops when emit returns false. Messages gone before their metadata was
// fetched are left out; when a body is missing, it hands the messages
// before that one, stops and reports incomplete.
func (s *session) fetchBatch(uids []imap.UID, emit func([]*Message) bool) (incomplete bool, err error) {
	f := s.f
	o := &f.w.opts
	set := imap.UIDSetNum(uids...)

	byUID := make(map[uint32]*Message, len(uids))
	err = s.uidFetch(set, &imap.FetchOptions{
		UID:          true,
		RFC822Size:   true,
		InternalDate: true,
		Flags:        true,
	}, func(buf *imapclient.FetchMessageBuffer) {
		if buf.UID == 0 {
			return
		}
		byUID[uint32(buf.UID)] = &Message{
			Folder:       f.name,
			UIDValidity:  s.validity,
			UID:          uint32(buf.UID),
			Size:         buf.RFC822Size,
			InternalDate: buf.InternalDate,
			Flags:        buf.Flags,
			TooLarge:     o.MaxMessageSize > 0 && buf.RFC822Size > o.MaxMessageSize,
			History:      s.isHistory(uint32(buf.UID), buf.InternalDate),
		}
	})
	if err != nil {
		return false, fmt.Errorf("uid fetch %v: %w", set, err)
	}

	msgs := make([]*Message, 0, len(byUID))
	for _, m := range byUID {
		msgs = append(msgs, m)
	}
	slices.SortFunc(msgs, func(a, b *Message) int { return cmp.Compare(a.UID, b.UID) })

	// Chunks of consecutive messages whose bodies add up to at most
	// maxBodyChunk (a larger message alone); TooLarge messages ride along
	// without a body.
	for start := 0; start < len(msgs); {
		end, size := start, int64(0)
		for end < len(msgs) {
			m := msgs[end]
			if !m.TooLarge && !m.History {
				if end > start && size+m.Size > maxBodyChunk {
					break
				}
				size += m.Size
			}
			end++
		}
		chunk := msgs[start:end]
		start = end
		got, err := s.fetchBodies(chunk)
		if err != nil {
			return false, err
		}
		for i, m := range chunk {
			if !m.TooLarge && !m.History && !got[m.UID] {
				// Most likely expunged between the two FETCHes. Stop
				// before it: the next UID SEARCH tells whether it still
				// exists.
				emit(chunk[:i])
				return true, nil
			}
		}
		if !emit(chunk) {
			return false, nil
		}
	}
	return false, nil
}

// fetchBodies fetches the bodies of the messages of chunk that are not
// TooLarge into their Raw, and reports which UIDs got one.
func (s *session) fetchBodies(chunk []*Message) (got map[uint32]bool, err error) {
	var set imap.UIDSet
	byUID := make(map[uint32]*Message, len(chunk))
	for _, m := range chunk {
		if !m.TooLarge && !m.History {
			set.AddNum(imap.UID(m.UID))
			byUID[m.UID] = m
		}
	}
	got = make(map[uint32]bool, len(byUID))
	if len(byUID) == 0 {
		return got, nil
	}
	// The items are read as they stream in rather than Collected:
	// Collect reads a body with io.ReadAll, which grows its buffer from
	// 512 bytes by copying, where the literal's size is known up front.
	s.wd.arm()
	defer s.wd.disarm()
	cmd := s.c.Fetch(set, &imap.FetchOptions{
		UID:         true,
		BodySection: []*imap.FetchItemBodySection{&bodySection},
	})
	for {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		var (
			uid  uint32
			raw  []byte
			have bool
		)
		for {
			item := msg.Next()
			if item == nil {
				break
			}
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				uid = uint32(item.UID)
			case imapclient.FetchItemDataBodySection:
				if sec := item.Section; sec == nil || sec.Specifier != imap.PartSpecifierNone || len(sec.Part) != 0 {
					continue
				}
				if raw, err = readLiteral(item.Literal); err != nil {
					cmd.Close()
					return nil, fmt.Errorf("uid fetch body %v: %w", set, err)
				}
				have = true
			}
		}
		s.wd.arm()
		if m := byUID[uid]; m != nil && have {
			m.Raw = raw
			got[m.UID] = true
		}
	}
	if err := cmd.Close(); err != nil {
		return nil, fmt.Errorf("uid fetch body %v: %w", set, err)
	}
	return got, nil
}

// maxPrealloc bounds the buffer readLiteral allocates on the server's word.
const maxPrealloc = 32 << 20

// readLiteral reads a literal whole into a buffer of its announced size;
// a NIL body (no literal) is empty.
func readLiteral(lit imap.LiteralReader) ([]byte, error) {
	if lit == nil {
		return []byte{}, nil
	}
	n := lit.Size()
	if n < 0 || n > maxPrealloc {
		return io.ReadAll(lit)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(lit, b); err != nil {
		return nil, err
	}
	return b, nil
}

// uidFetch runs a UID FETCH of set and calls fn with each message as it
// arrives, keeping the watchdog armed while the server sends.
func (s *session) uidFetch(set imap.UIDSet, opts *imap.FetchOptions, fn func(*imapclient.FetchMessageBuffer)) error {
	s.wd.arm()
	defer s.wd.disarm()
	cmd := s.c.Fetch(set, opts)
	for {
		data := cmd.Next()
		if data == nil {
			break
		}
		buf, err := data.Collect()
		if err != nil {
			cmd.Close()
			return err
		}
		s.wd.arm()
		fn(buf)
	}
	return cmd.Close()
}

// isHistory reports whether the message uid, which arrived at internalDate,
// lies in the folder's history (Cursor.HistoryBelow).
func (s *session) isHistory(uid uint32, internalDate time.Time) bool {
	h := s.history
	return h.UIDValidity == s.validity && uid < h.HistoryBelow && !internalDate.IsZero() && internalDate.Before(h.HistoryBefore)
}

// startPoint finds where reading the selected folder starts under start at
// now: after the last UID for "now"; for Since, before the first message
// that arrived within Since (UID SEARCH SINCE, then the exact INTERNALDATE),
// with the older messages above it marked as history.
func (s *session) startPoint(start Start, now time.Time) (Cursor, error) {
	c := Cursor{UIDValidity: s.validity}
	all, err := s.searchAfter(0)
	if err != nil {
		return c, err
	}
	next := s.uidNext
	if len(all) > 0 && uint32(all[len(all)-1]) >= next {
		next = uint32(all[len(all)-1]) + 1 // no or a stale UIDNEXT
	}
	c.UID, c.History = next-1, len(all)
	if next == 0 {
		c.UID = 0
	}
	if start.Since <= 0 || len(all) == 0 {
		return c, nil
	}
	cutoff := now.Add(-start.Since)
	// SEARCH SINCE compares dates only, in the server's time zone: ask from
	// a day earlier and check INTERNALDATE exactly (RFC 9051 section 6.4.4).
	s.wd.arm()
	data, err := s.c.UIDSearch(&imap.SearchCriteria{Since: cutoff.AddDate(0, 0, -1)}, nil).Wait()
	s.wd.disarm()
	if err != nil {
		return c, fmt.Errorf("uid search since %s: %w", cutoff.Format(time.DateOnly), err)
	}
	candidates := data.AllUIDs()
	if len(candidates) == 0 {
		return c, nil
	}
	var window []uint32
	err = s.uidFetch(imap.UIDSetNum(candidates...), &imap.FetchOptions{UID: true, InternalDate: true}, func(buf *imapclient.FetchMessageBuffer) {
		if buf.UID != 0 && !buf.InternalDate.Before(cutoff) {
			window = append(window, uint32(buf.UID))
		}
	})
	if err != nil {
		return c, fmt.Errorf("uid fetch internaldate: %w", err)
	}
	if len(window) == 0 {
		return c, nil
	}
	first := slices.Min(window)
	c.UID = first - 1
	c.HistoryBelow, c.HistoryBefore = next, cutoff
	c.History = len(all) - len(window)
	return c, nil
}
