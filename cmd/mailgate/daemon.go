package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mailgate/bridge"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mailgate/config"
	"mailgate/imapsync"
	"mailgate/inbound"
	"mailgate/lease"
	"mailgate/mailparse"
	"mailgate/media"
	"mailgate/metrics"
	"mailgate/msgid"
	"mailgate/oauthgrant"
	"mailgate/outbound"
	"mailgate/outbound/safefetch"
	"mailgate/store"
	"mailgate/verify"
)

// daemonOptions configures startDaemon.
type daemonOptions struct {
	Config     *config.Config
	ConfigPath string
	Logger     *slog.Logger
	Getenv     func(string) string
	// Resolver replaces DNS for self DKIM checks (tests).
	Resolver verify.Resolver
	// Listen opens the webhook and metrics listeners; nil means
	// net.Listen. Tests hand over listeners they bound on port 0.
	Listen func(network, addr string) (net.Listener, error)
	// LeaseEvents, when set, is told every change of this instance's
	// channel leases (tests).
	LeaseEvents func(lease.Event)
}

// daemon is one running mailgate: the store, the HTTP listener and one set
// of goroutines per channel.
type daemon struct {
	opts  daemonOptions
	log   *slog.Logger
	db    *store.DB
	media *media.Library
	msgid *msgid.Generator
	ln    net.Listener
	srv   *http.Server

	metrics    *metrics.Metrics
	metricsSrv *http.Server
	outbound   *outbound.Outbox
	// leases decides which instance does each channel's mailbox work;
	// nil when [store] dsn is empty (a single instance).
	leases *lease.Table

	reloadMu sync.Mutex // serialises reloads and shutdown
	mu       sync.Mutex
	channels map[string]*channelRun
	closing  bool // set by shutdown: no channel starts after it
	wg       sync.WaitGroup
	errc     chan error
}

// channelRun is the running state of one channel.
type channelRun struct {
	cfg     config.Channel
	out     outbound.Channel
	cancel  context.CancelFunc
	done    chan struct{}
	watcher *imapsync.Watcher
	inbound *inbound.Pipeline
	grant   *oauthgrant.Source // nil for a channel with passwords
	// working is the Unix time in nanoseconds since which the mailbox
	// side (watcher and poster) runs here; 0 while it does not, which
	// with leases means another instance may hold the channel.
	working atomic.Int64
}

// mailboxRunning reports whether the channel's watcher and poster run on
// this instance, and since when.
func (r *channelRun) mailboxRunning() (time.Time, bool) {
	n := r.working.Load()
	return time.Unix(0, n), n != 0
}

// startDaemon opens the store, binds the HTTP listener and starts every
// channel. It returns once all of that is under way; wait blocks until ctx
// is cancelled and everything has stopped.
func startDaemon(ctx context.Context, opts daemonOptions) (*daemon, error) {
	cfg := opts.Config
	d := &daemon{opts: opts, log: opts.Logger, channels: map[string]*channelRun{}, errc: make(chan error, 1), metrics: metrics.New()}
	db, err := openDBWith(ctx, cfg, store.Options{AcceptLog: true})
	if err != nil {
		return nil, err
	}
	d.db = db
	if err := d.openMedia(ctx); err != nil {
		db.Close()
		return nil, err
	}

	idKey, err := db.InstallationKey(ctx, "message-id", 32)
	if err != nil {
		db.Close()
		return nil, err
	}
	domain := "mailgate.invalid"
	if len(cfg.Channels) > 0 {
		if _, dom, ok := strings.Cut(cfg.Channels[0].SMTP.From.Address, "@"); ok {
			domain = dom
		}
	}
	if d.msgid, err = msgid.NewGenerator(idKey, domain); err != nil {
		db.Close()
		return nil, err
	}

	if n, err := db.RequeueSending(ctx); err != nil {
		db.Close()
		return nil, err
	} else if n > 0 {
		d.log.Warn("outbound: replies that were being sent when mailgate stopped are queued again; they may reach the customer twice", "count", n)
	}
	d.outbound, err = outbound.New(outbound.Options{
		DB:       db,
		Channels: d.outboundChannel,
		Fetcher: safefetch.New(safefetch.Options{
			MaxSize:    int64(cfg.Media.MaxSize),
			AllowCIDRs: cfg.Media.FetchAllow,
			UserAgent:  "mailgate/" + versionString(),
		}),
		MsgID:        d.msgid,
		MaxMediaSize: int64(cfg.Media.MaxSize),
		Observe:      d.observeOutbound,
		Logger:       d.log,
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	webhook := outbound.NewWebhook(outbound.WebhookOptions{
		Channels: d.webhookChannel,
		DB:       db,
		Wake:     d.outbound.Wake,
		Logger:   d.log,
	})

	mux := http.NewServeMux()
	mux.Handle("/media/", d.media)
	mux.Handle("/userlike/", webhook)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"status":"ok"}`)
	})
	if d.opts.Listen == nil {
		d.opts.Listen = net.Listen
	}
	d.ln, err = d.opts.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("server: listen on %s: %w", cfg.Server.Listen, err)
	}
	d.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := d.srv.Serve(d.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("server: HTTP listener failed", "err", err)
		}
	}()

	abort := func(err error) (*daemon, error) {
		d.shutdown()
		d.wg.Wait()
		if d.leases != nil {
			d.leases.Close()
		}
		db.Close()
		return nil, err
	}
	if err := d.openLeases(ctx); err != nil {
		return abort(err)
	}
	if err := d.startMetrics(); err != nil {
		return abort(err)
	}
	for _, ch := range cfg.Channels {
		if err := d.startChannel(ctx, ch); err != nil {
			return abort(err)
		}
	}
	d.wg.Add(2)
	go func() {
		defer d.wg.Done()
		d.housekeeping(ctx, cfg.Media.Retention.Duration)
	}()
	if cfg.Store.Driver == config.StorePostgres {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.requeueOrphans(ctx)
		}()
	}
	go func() {
		defer d.wg.Done()
		if err := d.outbound.Run(ctx); err != nil {
			d.log.Error("outbound: worker stopped", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		d.shutdown()
	}()
	return d, nil
}

func (d *daemon) openMedia(ctx context.Context) error {
	cfg := d.opts.Config
	key := []byte(cfg.Media.Key.Reveal())
	if len(key) == 0 {
		var err error
		if key, err = d.db.InstallationKey(ctx, "media-url", 32); err != nil {
			return err
		}
	}
	lib, err := media.New(media.Options{
		Dir:       cfg.Media.Dir,
		Key:       key,
		PublicURL: cfg.Server.PublicURL,
		URLTTL:    cfg.Media.URLTTL.Duration,
		MaxSize:   int64(cfg.Media.MaxSize),
		Index:     mediaIndex{d.db},
		Blobs:     mediaBlobsFor(cfg, d.db),
		Logger:    d.log,
	})
	if err != nil {
		return err
	}
	d.media = lib
	return nil
}

// httpAddr is the bound address of the HTTP listener.
func (d *daemon) httpAddr() string { return d.ln.Addr().String() }

// startChannel builds and starts the goroutines of one channel.
func (d *daemon) startChannel(parent context.Context, ch config.Channel) error {
	log := d.log.With("channel", ch.Name)
	for _, w := range bridge.Warnings(ch) {
		log.Warn(w)
	}
	built, err := bridge.Build(d.opts.Config, ch, bridge.Deps{
		DB:             d.db,
		Media:          d.media,
		MediaURL:       d.mediaURL,
		IsOwnMessageID: d.msgid.IsOwn,
		Resolver:       d.opts.Resolver,
		UserAgent:      "mailgate/" + versionString(),
		LoginCommand:   loginCommand(d.opts.ConfigPath, ch.Name),
		OnBounce: func(ctx context.Context, report *mailparse.Report, raw []byte) {
			if _, err := d.outbound.HandleBounce(ctx, ch.Name, report, raw); err != nil {
				log.Error("outbound: matching a bounce failed", "err", err)
			}
		},
		Observe: d.observer(ch.Name),
		Logger:  d.log,

		DrainTimeout: d.drainTimeout(),
	})
	if err != nil {
		return err
	}
	d.metrics.InitChannel(ch.Name)
	run := &channelRun{cfg: ch, done: make(chan struct{}), out: built.Outbound, grant: built.Grant, watcher: built.Watcher, inbound: built.Pipeline}
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	run.cancel = cancel
	go func() {
		defer close(run.done)
		if d.leases == nil {
			d.runMailbox(ctx, run, log)
			return
		}
		// Only while this instance holds the channel's lease; the
		// lease cancels the work before it could expire for others.
		d.leases.Hold(ctx, ch.Name, func(ctx context.Context, token int64) {
			d.runMailbox(ctx, run, log.With("lease_token", token))
		})
	}()
	d.mu.Lock()
	if d.closing {
		d.mu.Unlock()
		cancel()
		<-run.done
		return nil
	}
	d.channels[ch.Name] = run
	d.mu.Unlock()
	log.Info("channel started", "imap", ch.IMAP.Address, "folders", strings.Join(ch.IMAP.Folders, ","))
	return nil
}

// runMailbox runs the mailbox side of a channel, its IMAP watcher and its
// poster, until ctx is done and both have returned. The webhook and the
// outbox worker serve the channel whether or not this runs.
func (d *daemon) runMailbox(ctx context.Context, run *channelRun, log *slog.Logger) {
	run.working.Store(time.Now().UnixNano())
	defer run.working.Store(0)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := run.watcher.Run(ctx); err != nil {
			log.Error("imap: watcher stopped", "err", err)
		}
	})
	wg.Go(func() {
		if err := run.inbound.Run(ctx); err != nil {
			log.Error("inbound: poster stopped", "err", err)
		}
	})
	wg.Wait()
}

// loginCommand is the command that logs channel in again.
func loginCommand(configPath, channel string) string {
	if configPath == "" {
		configPath = "FILE"
	}
	return "mailgate oauth login -c " + shellQuote(configPath) + " -channel " + channel
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=:@%,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// mediaURL signs the URL of a stored media file.
func (d *daemon) mediaURL(ctx context.Context, id string) (string, error) {
	m, err := d.db.Media(ctx, id)
	if err != nil {
		return "", fmt.Errorf("media %s: %w", id, err)
	}
	return d.media.URL(mediaRecord(m)), nil
}

// housekeeping runs the periodic sweeps: media retention and raw email
// pruning.
func (d *daemon) housekeeping(ctx context.Context, retention time.Duration) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		before := time.Now().Add(-retention)
		if _, err := d.media.Sweep(ctx, before); err != nil && ctx.Err() == nil {
			d.log.Error("media: sweep failed", "err", err)
		}
		if n, err := d.db.PruneRaw(ctx, before); err != nil && ctx.Err() == nil {
			d.log.Error("store: pruning raw emails failed", "err", err)
		} else if n > 0 {
			d.log.Info("store: pruned raw copies of handled emails", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// orphanCheck is how often an instance sharing a PostgreSQL store looks
// for replies that another instance was sending when it died.
const orphanCheck = 30 * time.Second

// requeueOrphans queues again, every orphanCheck, the replies that an
// instance sharing the PostgreSQL store was sending when its session
// ended (store.RequeueSending), so that the living instances send them.
func (d *daemon) requeueOrphans(ctx context.Context) {
	t := time.NewTicker(orphanCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := d.db.RequeueSending(ctx); err != nil && ctx.Err() == nil {
			d.log.Error("outbound: looking for replies of a stopped instance failed", "err", err)
		} else if n > 0 {
			d.log.Warn("outbound: replies that a stopped instance was sending are queued again; they may reach the customer twice", "count", n)
			d.outbound.Wake("", time.Time{})
		}
	}
}

// shutdown stops the channels (letting in-flight work finish), the HTTP
// server and the store. It is safe to call more than once.
func (d *daemon) shutdown() {
	d.reloadMu.Lock() // a reload in progress finishes first
	defer d.reloadMu.Unlock()
	// Stop taking webhooks first, so that none is answered 404 while the
	// channels drain; Shutdown lets requests in flight finish.
	for _, srv := range []*http.Server{d.srv, d.metricsSrv} {
		if srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = srv.Shutdown(ctx)
			cancel()
		}
	}
	d.mu.Lock()
	d.closing = true
	runs := make([]*channelRun, 0, len(d.channels))
	for name, r := range d.channels {
		runs = append(runs, r)
		delete(d.channels, name)
	}
	d.mu.Unlock()
	for _, r := range runs {
		r.cancel()
	}
	for _, r := range runs {
		<-r.done
	}
	select {
	case d.errc <- nil:
	default:
	}
}

// wait blocks until the daemon has stopped, then closes the store.
func (d *daemon) wait() error {
	err := <-d.errc
	d.wg.Wait()
	if d.leases != nil {
		d.leases.Close()
	}
	if cerr := d.db.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}
