// Command mailgate connects a support mailbox to the Userlike Message Center
// through Userlike's Custom Channel API.
//
// Usage:
//
//	mailgate <command> [flags]
//
// Run "mailgate help" for the list of commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// exitUsage is the exit status for bad flags and invalid configuration.
const exitUsage = 2

// command is one subcommand of the mailgate binary.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *environment, args []string) error
}

// environment carries what a command may touch of the process, so that tests
// can run commands in-process with their own streams and environment.
type environment struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

// usageError marks an error caused by the command line or the
// configuration; it makes mailgate exit with status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func commands() []command {
	return []command{
		{"run", "run the daemon", cmdRun},
		{"demo", "run the whole loop in one process: a mailbox, an SMTP relay, a simulated Userlike and mailgate", cmdDemo},
		{"check-config", "load and validate the configuration, print one line per channel", cmdCheckConfig},
		{"inspect", "print as JSON what mailgate would do with an email, without network or state changes", cmdInspect},
		{"status", "show per channel the cursors, queue depths, oldest pending item, last error, dead letters and lease holder", cmdStatus},
		{"dead", "list, show, retry or drop dead letters", cmdDead},
		{"oauth", "log a channel in with OAuth2 (oauth login), or show the grants (oauth status)", cmdOAuth},
		{"store", "copy the SQLite store into PostgreSQL (store migrate -to postgres)", cmdStore},
		{"simulate-userlike", "run a simulated Userlike Message Center to try a real mailbox before connecting Userlike", cmdSimulateUserlike},
		{"version", "print the version", cmdVersion},
		{"help", "list the commands, or describe one", cmdHelp},
	}
}

func main() {
	env := &environment{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	os.Exit(execute(context.Background(), env, os.Args[1:]))
}

// execute runs one command line and returns the process exit status.
func execute(ctx context.Context, env *environment, args []string) int {
	if len(args) == 0 {
		printUsage(env.stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		name = "help"
	case "-version", "--version":
		name = "version"
	}
	for _, c := range commands() {
		if c.name != name {
			continue
		}
		err := c.run(ctx, env, args[1:])
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		}
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(env.stderr, "%v\n", err)
			return exitUsage
		}
		fmt.Fprintf(env.stderr, "mailgate %s: %v\n", name, err)
		return 1
	}
	fmt.Fprintf(env.stderr, "mailgate: unknown command %q\n\n", name)
	printUsage(env.stderr)
	return exitUsage
}

func printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: mailgate <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun \"mailgate <command> -h\" for the flags of a command.\n")
}

func cmdHelp(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "help", "[command]", "list the commands, or describe one")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		printUsage(env.stdout)
		return nil
	}
	for _, c := range commands() {
		if c.name == fs.Arg(0) {
			return c.run(ctx, env, []string{"-h"})
		}
	}
	return usageError{fmt.Errorf("mailgate help: unknown command %q", fs.Arg(0))}
}

// newFlagSet returns a FlagSet whose -h output names the command, its
// arguments and its one-line description.
func newFlagSet(env *environment, name, argsUsage, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: mailgate %s %s\n\n%s.\n", name, argsUsage, upperFirst(summary))
		var hasFlags bool
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintf(fs.Output(), "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args, turning flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{fmt.Errorf("mailgate %s: %w", fs.Name(), err)}
	}
	return nil
}

// configFlag adds the -c flag. Its default is $MAILGATE_CONFIG, then
// /etc/mailgate/config.toml.
func configFlag(env *environment, fs *flag.FlagSet) *string {
	def := env.getenv("MAILGATE_CONFIG")
	if def == "" {
		def = "/etc/mailgate/config.toml"
	}
	return fs.String("c", def, "configuration `file` (default $MAILGATE_CONFIG, then /etc/mailgate/config.toml)")
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
