package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"mailgate/config"
	"mailgate/lease"
	"mailgate/store"
)

// openStore opens the store named by the configuration. The admin
// commands use it while the daemon runs: SQLite's WAL lets them read
// alongside it, and their rare writes wait on the busy timeout.
func openStore(ctx context.Context, env *environment, path string) (*config.Config, *store.DB, error) {
	cfg, err := loadConfig(env, path)
	if err != nil {
		return nil, nil, err
	}
	db, err := openDB(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return cfg, db, nil
}

func cmdStatus(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "status", "[-c FILE] [-json]", "show per channel the cursors, queue depths, oldest pending item, last error, dead letters and lease holder")
	path := configFlag(env, fs)
	asJSON := fs.Bool("json", false, "print JSON, for scripts")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, db, err := openStore(ctx, env, *path)
	if err != nil {
		return err
	}
	defer db.Close()
	holders, err := readLeases(ctx, cfg)
	if err != nil {
		return err
	}
	var all []channelStatus
	for _, ch := range cfg.Channels {
		st, err := db.Status(ctx, ch.Name)
		if err != nil {
			return err
		}
		if st.OAuth2, err = channelGrant(ctx, db, ch); err != nil {
			return err
		}
		cs := channelStatus{ChannelStatus: st}
		if holders != nil {
			h := holders[ch.Name]
			cs.Lease = &h
			if h.Channel == "" {
				cs.Lease.Channel = ch.Name
			}
		}
		all = append(all, cs)
	}
	if *asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(all)
	}
	for i, st := range all {
		if i > 0 {
			fmt.Fprintln(env.stdout)
		}
		printStatus(env.stdout, st.ChannelStatus)
		if st.Lease != nil {
			printLease(env.stdout, st.Lease)
		}
		if st.OAuth2 != nil {
			printGrant(env.stdout, st.OAuth2, loginCommand(*path, st.Channel))
		}
	}
	return nil
}

// channelStatus is one channel in `mailgate status`: the store's view and,
// with leases, which instance holds the channel.
type channelStatus struct {
	*store.ChannelStatus
	Lease *lease.Holder `json:"lease,omitempty"`
}

// readLeases reads the lease table when the store is PostgreSQL; nil
// otherwise.
func readLeases(ctx context.Context, cfg *config.Config) (map[string]lease.Holder, error) {
	if cfg.Store.Driver != config.StorePostgres {
		return nil, nil
	}
	dsn := cfg.Store.DSN.Reveal()
	pcfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("status: [store] dsn is malformed")
	}
	conn, err := pgx.ConnectConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("status: connect to the lease database: %w", err)
	}
	defer conn.Close(ctx)
	hs, err := lease.Holders(ctx, conn)
	if err != nil {
		return nil, err
	}
	out := make(map[string]lease.Holder, len(hs))
	for _, h := range hs {
		out[h.Channel] = h
	}
	return out, nil
}

func printLease(w io.Writer, h *lease.Holder) {
	switch {
	case h.Instance == "":
		fmt.Fprintln(w, "  lease:   never held; no instance runs the mailbox")
	case h.Live:
		fmt.Fprintf(w, "  lease:   held by %s (token %d, expires in %s unless renewed)\n", h.Instance, h.Token, time.Until(h.Expires).Round(100*time.Millisecond))
	default:
		fmt.Fprintf(w, "  lease:   free (last held by %s, token %d, expired %s); no instance runs the mailbox\n", h.Instance, h.Token, ago(h.Expires))
	}
}

func printStatus(w io.Writer, st *store.ChannelStatus) {
	fmt.Fprintf(w, "channel %q\n", st.Channel)
	for _, c := range st.Cursors {
		fmt.Fprintf(w, "  folder %-20s uidvalidity %d, last uid %d (%s)\n", c.Folder, c.UIDValidity, c.UID, ago(c.UpdatedAt))
		if c.History > 0 {
			fmt.Fprintf(w, "  %-27s %d older messages left unposted as history (imap.start)\n", "", c.History)
		}
	}
	if len(st.Cursors) == 0 {
		fmt.Fprintln(w, "  no folder synced yet")
	}
	fmt.Fprintf(w, "  inbound: %d waiting to post, %d posted, %d skipped, %d quarantined, %d dead\n",
		st.Inbound[store.StateFetched]+st.Inbound[store.StatePosting], st.Inbound[store.StatePosted],
		st.Inbound[store.StateSkipped], st.Inbound[store.StateQuarantined], st.Inbound[store.StateDead])
	fmt.Fprintf(w, "  outbox:  %d queued, %d sending, %d sent, %d failed, %d cancelled\n",
		st.Outbox[store.OutboxQueued], st.Outbox[store.OutboxSending], st.Outbox[store.OutboxSent],
		st.Outbox[store.OutboxFailed], st.Outbox[store.OutboxCancelled])
	if !st.OldestPending.IsZero() {
		fmt.Fprintf(w, "  oldest pending item: %s\n", ago(st.OldestPending))
	}
	if st.LastError != "" {
		fmt.Fprintf(w, "  last error (%s): %s\n", ago(st.LastErrorAt), st.LastError)
	}
	if st.ActionsRefused > 0 {
		fmt.Fprintf(w, "  imap actions refused by the server: %d (the mail stays where it was; see check-config -connect)\n", st.ActionsRefused)
		fmt.Fprintf(w, "    last: %s\n", st.LastActionRefused)
	}
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

func cmdDead(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "dead", "[-c FILE] list|show ID|retry ID|drop ID", "list, show, retry or drop dead letters")
	path := configFlag(env, fs)
	channel := fs.String("channel", "", "only this channel (list)")
	raw := fs.Bool("raw", false, "show: print the raw email instead of JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	verb := fs.Arg(0)
	var id int64
	switch verb {
	case "list":
		if fs.NArg() != 1 {
			return usageError{fmt.Errorf("mailgate dead list takes no arguments")}
		}
	case "show", "retry", "drop":
		if fs.NArg() != 2 {
			return usageError{fmt.Errorf("mailgate dead %s: want one ID", verb)}
		}
		var err error
		if id, err = strconv.ParseInt(fs.Arg(1), 10, 64); err != nil || id <= 0 {
			return usageError{fmt.Errorf("mailgate dead %s: invalid ID %q", verb, fs.Arg(1))}
		}
	default:
		fs.Usage()
		return usageError{fmt.Errorf("mailgate dead: want list, show, retry or drop")}
	}
	cfg, db, err := openStore(ctx, env, *path)
	if err != nil {
		return err
	}
	defer db.Close()
	switch verb {
	case "list":
		rows, err := db.ListInbound(ctx, store.InboundFilter{Channel: *channel, States: []store.InboundState{store.StateDead}, Limit: 1000})
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tCHANNEL\tWHEN\tFROM\tSUBJECT\tREASON")
		for _, r := range rows {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Channel, r.UpdatedAt.Local().Format(time.DateTime), r.Contact, clip(r.Subject, 40), clip(r.Reason, 100))
		}
		return tw.Flush()
	case "show":
		r, err := db.Inbound(ctx, id)
		if err != nil {
			return err
		}
		if *raw {
			if r.Raw == nil {
				return fmt.Errorf("mailgate dead show: email %d has no raw copy in the store (only emails dead-lettered when fetched keep one); it is in folder %q, UIDVALIDITY %d, UID %d", id, r.Folder, r.UIDValidity, r.UID)
			}
			_, err := env.stdout.Write(r.Raw)
			return err
		}
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(deadView(r))
	case "retry":
		if err := checkRefetchable(ctx, cfg, db, id); err != nil {
			return fmt.Errorf("retry %d: %w (save it with `mailgate dead show -raw %d` and deliver it again)", id, err, id)
		}
		refetch, err := db.Requeue(ctx, id)
		if err != nil {
			return fmt.Errorf("retry %d: %w", id, err)
		}
		if refetch {
			fmt.Fprintf(env.stdout, "dead letter %d will be fetched from the mailbox again within a few seconds (if the daemon runs) and replaced by what the daemon decides now; see `mailgate dead list` and `mailgate status`\n", id)
		} else {
			fmt.Fprintf(env.stdout, "dead letter %d is queued again; the daemon posts it on its next round\n", id)
		}
	case "drop":
		if err := db.DropDead(ctx, id); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "dead letter %d dropped\n", id)
	}
	return nil
}

// checkRefetchable refuses to retry a dead letter without posts that the
// daemon could not fetch again: its channel or folder is no longer
// watched, or the folder's UIDVALIDITY changed since.
func checkRefetchable(ctx context.Context, cfg *config.Config, db *store.DB, id int64) error {
	r, err := db.Inbound(ctx, id)
	if err != nil || r.State != store.StateDead || r.PostsTotal > 0 {
		return nil // Requeue says what is wrong, or queues the posts
	}
	ch, ok := cfg.Channel(r.Channel)
	if !ok {
		return fmt.Errorf("channel %q is no longer configured, so its mailbox is not watched", r.Channel)
	}
	if !slices.Contains(ch.IMAP.Folders, r.Folder) {
		return fmt.Errorf("folder %q is not among channel %q's imap.folders, so it is not watched", r.Folder, r.Channel)
	}
	c, err := db.Cursor(ctx, r.Channel, r.Folder)
	if err != nil {
		return err
	}
	if c.UIDValidity != r.UIDValidity {
		return fmt.Errorf("folder %q was renumbered (UIDVALIDITY %d, now %d), so its UID %d names no email any more", r.Folder, r.UIDValidity, c.UIDValidity, r.UID)
	}
	return nil
}

func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// deadView is the JSON shape of `mailgate dead show`.
func deadView(r *store.Inbound) any {
	return struct {
		ID             int64           `json:"id"`
		Channel        string          `json:"channel"`
		Folder         string          `json:"folder"`
		UID            uint32          `json:"uid"`
		State          string          `json:"state"`
		Reason         string          `json:"reason"`
		LastError      string          `json:"last_error,omitempty"`
		Contact        string          `json:"contact"`
		Subject        string          `json:"subject"`
		MessageID      string          `json:"message_id"`
		Classification string          `json:"classification"`
		Verdict        json.RawMessage `json:"verification,omitempty"`
		PostsDone      int             `json:"posts_done"`
		PostsTotal     int             `json:"posts_total"`
		RawSize        int             `json:"raw_size"`
		ArrivedAt      time.Time       `json:"arrived_at"`
		UpdatedAt      time.Time       `json:"updated_at"`
	}{r.ID, r.Channel, r.Folder, r.UID, string(r.State), r.Reason, r.LastError, r.Contact, r.Subject, r.MessageID,
		r.Classification, json.RawMessage(r.Verdict), r.PostsDone, len(r.Posts), len(r.Raw), r.ArrivedAt, r.UpdatedAt}
}
