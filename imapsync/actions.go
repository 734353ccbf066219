package imapsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/emersion/go-imap/v2"
)

const (
	// actionBatch is how many pending actions are asked for at a time.
	actionBatch = 200
	// maxActionRounds bounds one application, in case ActionsDone does not
	// take actions out of PendingActions.
	maxActionRounds = 20
)

// actionGroup is one IMAP operation over a set of UIDs.
type actionGroup struct {
	kind string // ActionSeen, ActionFlag, ActionMove or ActionDelete
	dest string // for ActionMove
	uids imap.UIDSet
	ids  []int64
}

// droppedAction is an action that cannot be applied, with the reason.
type droppedAction struct {
	Action
	reason string
	stale  bool // for another UIDVALIDITY: expected after a change
}

// planActions groups acts by kind and destination, in the order seen,
// flag, move (destinations in order of first appearance), delete, so that
// flags are set before a message leaves the folder. Actions for another
// UIDVALIDITY, of unknown kind or without destination are dropped.
func planActions(acts []Action, validity uint32, moveTo, quarantine string) (groups []actionGroup, dropped []droppedAction) {
	type key struct{ kind, dest string }
	index := make(map[key]int)
	var keys []key
	var byKey []*actionGroup
	for _, a := range acts {
		k := key{kind: a.Kind}
		switch a.Kind {
		case ActionSeen, ActionFlag, ActionDelete:
		case ActionMove:
			k.dest = a.Dest
			if k.dest == "" {
				k.dest = moveTo
			}
			if k.dest == "" {
				dropped = append(dropped, droppedAction{a, "move without destination and no MoveTo configured", false})
				continue
			}
		case ActionQuarantine:
			k = key{kind: ActionMove, dest: quarantine}
			if quarantine == "" {
				dropped = append(dropped, droppedAction{a, "quarantine without QuarantineFolder configured", false})
				continue
			}
		default:
			dropped = append(dropped, droppedAction{a, fmt.Sprintf("unknown kind %q", a.Kind), false})
			continue
		}
		if a.UID == 0 {
			dropped = append(dropped, droppedAction{a, "UID 0", false})
			continue
		}
		if a.UIDValidity != validity {
			dropped = append(dropped, droppedAction{a, fmt.Sprintf("UIDVALIDITY %d, folder now has %d", a.UIDValidity, validity), true})
			continue
		}
		i, ok := index[k]
		if !ok {
			i = len(keys)
			index[k] = i
			keys = append(keys, k)
			byKey = append(byKey, &actionGroup{kind: k.kind, dest: k.dest})
		}
		g := byKey[i]
		g.uids.AddNum(imap.UID(a.UID))
		g.ids = append(g.ids, a.ID)
	}
	for _, kind := range []string{ActionSeen, ActionFlag, ActionMove, ActionDelete} {
		for i, k := range keys {
			if k.kind == kind {
				groups = append(groups, *byKey[i])
			}
		}
	}
	return groups, dropped
}

// applyActions applies the folder's pending actions. Failures of the action
// source are logged and left for the next time; err is a connection error.
func (s *session) applyActions(ctx context.Context) error {
	f := s.f
	o := &f.w.opts
	if o.Actions == nil {
		return nil
	}
	for range maxActionRounds {
		acts, err := o.Actions.PendingActions(ctx, f.name, actionBatch)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			f.log.Warn("imap: reading pending actions failed", "err", err)
			return nil
		}
		if len(acts) == 0 {
			return nil
		}
		groups, dropped := planActions(acts, s.validity, o.MoveTo, o.QuarantineFolder)
		var done []int64
		for _, d := range dropped {
			level := slog.LevelWarn
			if d.stale {
				level = slog.LevelInfo
			}
			f.log.Log(ctx, level, "imap: action dropped", "id", d.ID, "kind", d.Kind, "uid", d.UID, "reason", d.reason)
			done = append(done, d.ID)
		}
		for _, g := range groups {
			err := s.applyGroup(g)
			var imapErr *imap.Error
			switch {
			case err == nil:
				f.log.Debug("imap: action applied", "kind", g.kind, "dest", g.dest, "uids", g.uids.String())
				done = append(done, g.ids...)
			case errors.As(err, &imapErr) && transientCode(imapErr.Code):
				f.log.Warn("imap: action failed, will retry", "kind", g.kind, "dest", g.dest, "uids", g.uids.String(), "err", err)
			case errors.As(err, &imapErr):
				// The server refused: retrying will not help, and the
				// message stays where it is, which loses nothing. It is
				// recorded as refused, for status and metrics, and a
				// message that should have left the folder is flagged so
				// that it stands out in a mail client.
				flagged := ""
				if g.kind == ActionMove {
					flagged = "; the messages stay in " + fmt.Sprintf("%q", f.name)
					if ferr := s.addFlag(g.uids, imap.FlagFlagged); ferr == nil {
						flagged += ", flagged"
					}
				}
				reason := fmt.Sprintf("%s: %v%s", actionName(g), err, flagged)
				f.log.Error("imap: action refused by server, giving up", "kind", g.kind, "dest", g.dest, "uids", g.uids.String(), "err", err,
					"hint", "run `mailgate check-config -connect` to see which folder names the server accepts")
				if rerr := o.Actions.ActionsRefused(ctx, g.ids, reason); rerr != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					f.log.Warn("imap: recording refused actions failed", "err", rerr)
				}
			default:
				if len(done) > 0 {
					if derr := o.Actions.ActionsDone(ctx, done); derr != nil {
						f.log.Warn("imap: marking actions done failed", "err", derr)
					}
				}
				return err
			}
		}
		if len(done) > 0 {
			if err := o.Actions.ActionsDone(ctx, done); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				f.log.Warn("imap: marking actions done failed", "err", err)
				return nil
			}
		}
		if len(acts) < actionBatch || len(done) == 0 {
			return nil
		}
	}
	return nil
}

// actionName says what a group does, for the operator.
func actionName(g actionGroup) string {
	switch g.kind {
	case ActionMove:
		return fmt.Sprintf("move to %q", g.dest)
	case ActionSeen:
		return `flag \Seen`
	case ActionFlag:
		return `flag \Flagged`
	case ActionDelete:
		return "delete"
	}
	return g.kind
}

// transientCode tells response codes worth retrying later.
func transientCode(code imap.ResponseCode) bool {
	switch code {
	case imap.ResponseCodeInUse, imap.ResponseCodeUnavailable, imap.ResponseCodeLimit, imap.ResponseCodeServerBug, imap.ResponseCodeOverQuota:
		return true
	}
	return false
}

// applyGroup runs one group's IMAP commands.
func (s *session) applyGroup(g actionGroup) error {
	s.wd.arm()
	defer s.wd.disarm()
	switch g.kind {
	case ActionSeen:
		return s.addFlag(g.uids, imap.FlagSeen)
	case ActionFlag:
		return s.addFlag(g.uids, imap.FlagFlagged)
	case ActionDelete:
		if err := s.addFlag(g.uids, imap.FlagDeleted); err != nil {
			return err
		}
		return s.expunge(g.uids)
	case ActionMove:
		if err := s.ensureMailbox(g.dest); err != nil {
			return err
		}
		if s.hasMove {
			if _, err := s.c.Move(g.uids, g.dest).Wait(); err != nil {
				return fmt.Errorf("uid move %v to %q: %w", g.uids, g.dest, err)
			}
			return nil
		}
		// Without MOVE: COPY, and only once it succeeded, delete.
		if _, err := s.c.Copy(g.uids, g.dest).Wait(); err != nil {
			return fmt.Errorf("uid copy %v to %q: %w", g.uids, g.dest, err)
		}
		if err := s.addFlag(g.uids, imap.FlagDeleted); err != nil {
			return err
		}
		return s.expunge(g.uids)
	}
	return fmt.Errorf("unknown action kind %q", g.kind)
}

// addFlag adds flag to uids silently.
func (s *session) addFlag(uids imap.UIDSet, flag imap.Flag) error {
	err := s.c.Store(uids, &imap.StoreFlags{
		Op:     imap.StoreFlagsAdd,
		Silent: true,
		Flags:  []imap.Flag{flag},
	}, nil).Close()
	if err != nil {
		return fmt.Errorf("uid store %v +flags %s: %w", uids, flag, err)
	}
	return nil
}

// expunge removes uids, or every \Deleted message when the server lacks
// UIDPLUS.
func (s *session) expunge(uids imap.UIDSet) error {
	if s.hasUIDPlus {
		if err := s.c.UIDExpunge(uids).Close(); err != nil {
			return fmt.Errorf("uid expunge %v: %w", uids, err)
		}
		return nil
	}
	if err := s.c.Expunge().Close(); err != nil {
		return fmt.Errorf("expunge: %w", err)
	}
	return nil
}

// ensureMailbox creates name unless it exists.
func (s *session) ensureMailbox(name string) error {
	if s.known[name] {
		return nil
	}
	list, err := s.c.List("", name, nil).Collect()
	if err != nil {
		return fmt.Errorf("list %q: %w", name, err)
	}
	exists := false
	for _, l := range list {
		if l.Mailbox == name {
			exists = true
		}
	}
	if !exists {
		err := s.c.Create(name, nil).Wait()
		var imapErr *imap.Error
		if err != nil && !(errors.As(err, &imapErr) && imapErr.Code == imap.ResponseCodeAlreadyExists) {
			return fmt.Errorf("create %q: %w", name, err)
		}
		if err == nil {
			s.f.log.Info("imap: created mailbox", "mailbox", name)
		}
	}
	s.known[name] = true
	return nil
}
