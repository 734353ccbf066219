package imapsync

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// CheckStep is one step of Check: what was tried, and the error with the
// server's words when it failed. Note adds information to a step that
// passed.
type CheckStep struct {
	Name string
	Err  error
	Note string
}

// Check connects and logs in as a Watcher would, then checks that every
// watched folder exists and reports on the folders mailgate creates when
// needed (quarantine, move_to). It changes nothing on the server. It stops
// at the first failed connection step.
func Check(ctx context.Context, opts Options) []CheckStep {
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
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		return append(steps, CheckStep{Name: "list folders", Err: err})
	}
	exists := func(name string) bool {
		return slices.ContainsFunc(list, func(d *imap.ListData) bool {
			return d.Mailbox == name || strings.EqualFold(name, "INBOX") && strings.EqualFold(d.Mailbox, "INBOX")
		})
	}
	for _, f := range o.Folders {
		st := CheckStep{Name: fmt.Sprintf("folder %q", f)}
		if !exists(f) {
			st.Err = fmt.Errorf("no such folder")
		} else if _, err := c.Status(f, &imap.StatusOptions{NumMessages: true, UIDValidity: true}).Wait(); err != nil {
			st.Err = err
		}
		steps = append(steps, st)
	}
	for _, f := range []struct{ what, name string }{{"quarantine folder", o.QuarantineFolder}, {"move_to folder", o.MoveTo}} {
		if f.name == "" {
			continue
		}
		st := CheckStep{Name: fmt.Sprintf("%s %q", f.what, f.name)}
		if !exists(f.name) {
			st.Note = "missing; created when first needed"
		}
		steps = append(steps, st)
	}
	_ = c.Logout().Wait()
	return steps
}
