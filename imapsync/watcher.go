// Package imapsync watches the IMAP folders of one channel's mailbox and
// hands every new message, in UID order, to a Handler.
//
// A Watcher keeps one connection per folder (IMAP IDLE only watches the
// selected mailbox). Each folder loop connects, logs in, selects the folder,
// catches up from the stored cursor (UID SEARCH, then FETCH with BODY.PEEK
// so that nothing is marked \Seen), applies pending actions (seen, flag,
// move, delete), and then waits in IDLE (or sleeps when the server lacks
// IDLE) until new mail, a Notify call, the IDLE refresh timer or the
// reconciliation poll wakes it. Connection failures are retried with
// exponential backoff.
//
// The Watcher only reads cursors: the Handler records each message and
// advances the cursor in one transaction, so a crash never loses nor skips
// a message.
package imapsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Watcher watches the folders of one channel's mailbox.
type Watcher struct {
	opts    Options
	log     *slog.Logger
	folders []*folderWatcher

	// maxQueuedBytes bounds each folder's fetched, unhandled bodies: the
	// constant maxQueuedBytes, lowered by tests.
	maxQueuedBytes int64

	mu         sync.Mutex
	authFailed bool // guarded by mu; shared by all folders
}

// State is a snapshot of a Watcher's health.
type State struct {
	// Connected is true when every folder has a selected connection.
	Connected bool
	// LastSync is the oldest of the folders' last complete catch-ups;
	// zero while some folder has never completed one.
	LastSync time.Time
	// LastError is the most recent connection error of any folder (with
	// the folder's name), empty once that folder has synced again. Handler
	// errors are logged, not reported here.
	LastError string
	// Backoff is the largest reconnect delay currently in use.
	Backoff time.Duration
	// AuthFailed is true while the server rejects the credentials.
	AuthFailed bool
	// Attempted is true once every folder has finished at least one
	// connection attempt, successful or not.
	Attempted bool
}

// NewWatcher validates opts and returns a Watcher. It does no I/O.
func NewWatcher(opts Options) (*Watcher, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	w := &Watcher{
		opts:           o,
		log:            o.Logger.With("channel", o.Channel),
		maxQueuedBytes: maxQueuedBytes,
	}
	for _, name := range o.Folders {
		w.folders = append(w.folders, &folderWatcher{
			w:       w,
			name:    name,
			log:     w.log.With("folder", name),
			notify:  make(chan struct{}, 1),
			exists:  make(chan struct{}, 1),
			backoff: backoff{min: o.MinBackoff, max: o.MaxBackoff},
		})
	}
	return w, nil
}

// Run watches every folder, each on its own connection and goroutine, until
// ctx is cancelled; it then returns nil. Errors are retried, not returned.
// Run must be called at most once per Watcher.
func (w *Watcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, f := range w.folders {
		wg.Go(func() { f.run(ctx) })
	}
	wg.Wait()
	return nil
}

// Notify asks every folder loop to apply pending actions (and look for new
// mail) soon. It never blocks.
func (w *Watcher) Notify() {
	for _, f := range w.folders {
		select {
		case f.notify <- struct{}{}:
		default:
		}
	}
}

// State returns a snapshot of the Watcher's health. It is safe for
// concurrent use.
func (w *Watcher) State() State {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := State{Connected: true, Attempted: true, AuthFailed: w.authFailed}
	var lastErrAt, oldestSync time.Time
	neverSynced := false
	for _, f := range w.folders {
		st := f.state
		s.Connected = s.Connected && st.connected
		s.Attempted = s.Attempted && st.attempted
		if st.lastSync.IsZero() {
			neverSynced = true
		} else if oldestSync.IsZero() || st.lastSync.Before(oldestSync) {
			oldestSync = st.lastSync
		}
		if st.lastError != "" && !st.lastErrorAt.Before(lastErrAt) {
			lastErrAt = st.lastErrorAt
			s.LastError = st.lastError
		}
		s.Backoff = max(s.Backoff, st.backoff)
	}
	if !neverSynced {
		s.LastSync = oldestSync
	}
	return s
}

// authResult records the outcome of a login and logs only changes: one
// ERROR line when logins start failing, one INFO line when they work again.
func (w *Watcher) authResult(username string, err error) {
	w.mu.Lock()
	was := w.authFailed
	w.authFailed = err != nil
	w.mu.Unlock()
	var ae *AuthError
	switch {
	case err != nil && errors.As(err, &ae) && ae.Reported:
	case err != nil && !was:
		w.log.Error(fmt.Sprintf("imap: channel %q: login as %q failed: %s", w.opts.Channel, username, serverText(err)))
	case err == nil && was:
		w.log.Info(fmt.Sprintf("imap: channel %q: login as %q succeeded again", w.opts.Channel, username))
	}
}

// folderState is the health of one folder loop, guarded by Watcher.mu.
type folderState struct {
	connected   bool
	attempted   bool
	lastSync    time.Time
	lastError   string
	lastErrorAt time.Time
	backoff     time.Duration
}

// updateState changes f's state under the Watcher's lock.
func (f *folderWatcher) updateState(change func(s *folderState)) {
	f.w.mu.Lock()
	change(&f.state)
	f.w.mu.Unlock()
}
