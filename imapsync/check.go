package imapsync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// CheckStep is one step of Check: what was tried, and the error with the
// server's words when it failed. Note adds information to a step that
// passed, or the fix to one that failed.
type CheckStep struct {
	Name string
	Err  error
	Note string
}

// CheckOptions are what Check looks at beyond the Watcher's Options.
type CheckOptions struct {
	// SentFolder is smtp.sent_folder: a folder name, SentFolderAuto, or ""
	// when replies are not appended anywhere.
	SentFolder string
}

// Check connects and logs in as a Watcher would, reads the server's
// personal namespace (RFC 2342), checks every watched folder and says how
// many of its messages the start point would post, and makes sure the
// folders mailgate writes to (the quarantine folder, move_to and the sent
// folder) exist: a missing one is created, as the daemon would create it
// when first needed, and the step says so. When the server refuses to
// create a name, the step fails with the server's words and, where the
// server keeps personal folders below a prefix (Cyrus: "INBOX."), names
// the folder that works. It stops at the first failed connection step.
func Check(ctx context.Context, opts Options, copts CheckOptions) []CheckStep {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var steps []CheckStep
	// Check needs no cursor store or handler: it fetches nothing.
	if opts.Cursors == nil {
		opts.Cursors = noCursors{}
	}
	if opts.Handler == nil {
		opts.Handler = noHandler{}
	}
	o, err := opts.withDefaults()
	if err != nil {
		return append(steps, CheckStep{Name: "options", Err: err})
	}
	c, stop, err := dialClient(ctx, &o, &imapclient.Options{})
	steps = append(steps, CheckStep{Name: fmt.Sprintf("connect to %s (%s)", o.Address, o.Security), Err: err})
	if err != nil {
		return steps
	}
	defer stop()
	err = o.Auth.Authenticate(ctx, c)
	steps = append(steps, CheckStep{Name: fmt.Sprintf("log in as %q", authUsername(o.Auth, nil)), Err: err})
	if err != nil {
		return steps
	}
	caps := c.Caps()
	var missing []string
	for _, cp := range []imap.Cap{imap.CapIdle, imap.CapUIDPlus, imap.CapMove} {
		if !caps.Has(cp) {
			missing = append(missing, string(cp))
		}
	}
	capStep := CheckStep{Name: "server capabilities"}
	if len(missing) > 0 {
		capStep.Note = "without " + strings.Join(missing, ", ") + " (mailgate falls back: polling, COPY+EXPUNGE)"
	}
	steps = append(steps, capStep)

	ns, err := personalNamespace(c)
	if err != nil {
		return append(steps, CheckStep{Name: "namespace", Err: err})
	}
	steps = append(steps, CheckStep{Name: "personal namespace", Note: ns.String()})
	fl, err := listFolders(c)
	if err != nil {
		return append(steps, CheckStep{Name: "list folders", Err: err})
	}

	for _, f := range o.Folders {
		st := CheckStep{Name: fmt.Sprintf("folder %q", f)}
		if !fl.exists(f) {
			st.Err = errors.New("no such folder")
			if alt := ns.prefixed(f); alt != f && fl.exists(alt) {
				st.Note = fmt.Sprintf("the server calls it %q: write that in imap.folders", alt)
			}
		} else {
			st.Note, st.Err = startCount(c, f, o.Start, o.Now())
		}
		steps = append(steps, st)
	}

	for _, f := range []struct{ key, name string }{
		{"imap.quarantine_folder", o.QuarantineFolder},
		{"imap.move_to", o.MoveTo},
		{"smtp.sent_folder", copts.SentFolder},
	} {
		if f.name == "" {
			continue
		}
		name := f.name
		if name == SentFolderAuto {
			name = fl.sentFolder(ns)
		}
		steps = append(steps, ensureFolder(c, fl, ns, f.key, name))
	}
	_ = c.Logout().Wait()
	return steps
}

// startCount says how many messages of folder the start point would post
// if mailgate read it for the first time now. The folder is opened
// read-only (EXAMINE).
func startCount(c *imapclient.Client, folder string, start Start, now time.Time) (string, error) {
	data, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return "", fmt.Errorf("examine: %w", err)
	}
	if start.All {
		return fmt.Sprintf("%d messages; start = \"all\" posts all of them on a first start", data.NumMessages), nil
	}
	s := &session{c: c, wd: newWatchdog(c), validity: data.UIDValidity, uidNext: uint32(data.UIDNext)}
	defer s.wd.disarm()
	cur, err := s.startPoint(start, now)
	if err != nil {
		return "", err
	}
	total := int(data.NumMessages)
	if start.Since <= 0 {
		return fmt.Sprintf("%d messages; start = \"now\" posts none of them on a first start, only mail that arrives later", total), nil
	}
	return fmt.Sprintf("%d messages; start = %q posts %d of them on a first start (arrived since %s)",
		total, formatSince(start.Since), max(total-cur.History, 0), now.Add(-start.Since).Format(time.RFC3339)), nil
}

func formatSince(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// ensureFolder makes sure name exists, creating it if it does not, and
// reports what it found or did as a step for the config key.
func ensureFolder(c *imapclient.Client, fl folderList, ns namespace, key, name string) CheckStep {
	st := CheckStep{Name: fmt.Sprintf("%s %q", key, name)}
	if fl.exists(name) {
		st.Note = "exists"
		return st
	}
	err := c.Create(name, nil).Wait()
	if err == nil {
		st.Note = "created it: it did not exist"
		return st
	}
	st.Err = fmt.Errorf("the server refuses to create it: %w", err)
	alt := ns.prefixed(name)
	switch {
	case alt == name:
	case fl.exists(alt):
		st.Note = fmt.Sprintf("%q exists: write %s = %q", alt, key, alt)
	case c.Create(alt, nil).Wait() == nil:
		st.Note = fmt.Sprintf("created %q instead, which the server accepts: write %s = %q", alt, key, alt)
	default:
		st.Note = fmt.Sprintf("the server refuses %q too", alt)
	}
	return st
}

// namespace is the server's personal namespace: the prefix its personal
// folders live under ("" on most servers, "INBOX." on Cyrus's default
// layout) and its hierarchy separator.
type namespace struct {
	Prefix string
	Delim  rune
	// Advertised is false when the server lacks NAMESPACE, and the
	// separator came from LIST.
	Advertised bool
}

func (ns namespace) String() string {
	delim := "none"
	if ns.Delim != 0 {
		delim = fmt.Sprintf("%q", string(ns.Delim))
	}
	s := fmt.Sprintf("prefix %q, separator %s", ns.Prefix, delim)
	if !ns.Advertised {
		s += " (no NAMESPACE; separator from LIST)"
	}
	return s
}

// prefixed returns name below the personal prefix, with the separator
// written as "/" or "." turned into the server's; name itself when the
// server has no prefix or name is already below it or is INBOX.
func (ns namespace) prefixed(name string) string {
	if ns.Prefix == "" || strings.EqualFold(name, "INBOX") || strings.HasPrefix(strings.ToUpper(name), strings.ToUpper(ns.Prefix)) {
		return name
	}
	if ns.Delim != 0 {
		for _, sep := range []string{"/", "."} {
			if sep != string(ns.Delim) {
				name = strings.ReplaceAll(name, sep, string(ns.Delim))
			}
		}
	}
	return ns.Prefix + name
}

// personalNamespace reads the first personal namespace (RFC 2342) or, on a
// server without NAMESPACE, the separator that LIST "" "" reports.
func personalNamespace(c *imapclient.Client) (namespace, error) {
	if c.Caps().Has(imap.CapNamespace) {
		data, err := c.Namespace().Wait()
		if err != nil {
			return namespace{}, fmt.Errorf("namespace: %w", err)
		}
		if len(data.Personal) > 0 {
			return namespace{Prefix: data.Personal[0].Prefix, Delim: data.Personal[0].Delim, Advertised: true}, nil
		}
		return namespace{Advertised: true}, nil
	}
	list, err := c.List("", "", nil).Collect()
	if err != nil {
		return namespace{}, fmt.Errorf("list \"\" \"\": %w", err)
	}
	var ns namespace
	if len(list) > 0 {
		ns.Delim = list[0].Delim
	}
	return ns, nil
}

// folderList is the result of LIST "" "*", with special-use attributes
// where the server has them.
type folderList []*imap.ListData

func listFolders(c *imapclient.Client) (folderList, error) {
	list, err := c.List("", "*", &imap.ListOptions{ReturnSpecialUse: c.Caps().Has(imap.CapSpecialUse)}).Collect()
	if err != nil {
		return nil, fmt.Errorf("list folders: %w", err)
	}
	return list, nil
}

// exists reports whether name is listed; INBOX is case-insensitive (RFC
// 9051 section 5.1).
func (fl folderList) exists(name string) bool {
	return slices.ContainsFunc(fl, func(d *imap.ListData) bool {
		return d.Mailbox == name || strings.EqualFold(name, "INBOX") && strings.EqualFold(d.Mailbox, "INBOX")
	})
}

// sentFolder is the folder smtp.sent_folder = "auto" uses: the one marked
// \Sent (RFC 6154), else the first of the usual names that exists, else
// "Sent" below the personal prefix.
func (fl folderList) sentFolder(ns namespace) string {
	for _, d := range fl {
		if slices.Contains(d.Attrs, imap.MailboxAttrSent) {
			return d.Mailbox
		}
	}
	for _, name := range sentFallbacks {
		if slices.ContainsFunc(fl, func(d *imap.ListData) bool { return strings.EqualFold(d.Mailbox, name) }) {
			return name
		}
	}
	return ns.prefixed(sentFallbacks[0])
}
