package main

import (
	"bytes"
	"errors"
	"fmt"
	"mailgate/e2e/mailsys"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Tokens of the benchmark channel.
const (
	inboundToken  = "bench-inbound-token-0123456789"
	outboundToken = "bench-outbound-token-9876543210"
)

// daemonConfig is what a scenario chooses of mailgate's configuration.
type daemonConfig struct {
	IMAPAddr string // host:port, plain IMAP
	User     string // IMAP login
	Password string
	SMTPAddr string // relay for replies, plain SMTP
	// InboundURL is the fake Userlike's Inbound URL.
	InboundURL string
	// Coalesce is smtp.coalesce ("" = mailgate's default).
	Coalesce string
	// After is imap.after ("" = mailgate's default, "seen").
	After string
	// Perf attaches `perf record -g` to the daemon, writing
	// dir/perf.data (bench -perf).
	Perf bool
	// PostgresDSN, when set, puts the store in PostgreSQL
	// ([store] driver = "postgres") instead of SQLite.
	PostgresDSN string
}

// mailgate is one run of the real binary.
type mailgate struct {
	dir     string
	listen  string // webhook and media
	logPath string

	cmd     *exec.Cmd
	started time.Time // just before exec
	ready   chan time.Time
	exited  chan struct{}
	waitErr error

	notify *net.UnixConn
	perf   *exec.Cmd // perf record attached to the daemon, or nil

	mu       sync.Mutex
	peakRSS  int64 // highest VmRSS sampled, bytes
	stopRSS  chan struct{}
	stopOnce sync.Once
}

// writeConfig renders cfg into dir/mailgate.toml and returns the HTTP
// listen address.
func writeConfig(dir string, cfg daemonConfig) (path, listen string, err error) {
	port, err := mailsys.FreePort()
	if err != nil {
		return "", "", err
	}
	listen = "127.0.0.1:" + port
	q := strconv.Quote
	var b strings.Builder
	fmt.Fprintf(&b, "[server]\nlisten = %s\npublic_url = %s\n\n", q(listen), q("http://"+listen))
	fmt.Fprintf(&b, "[metrics]\nlisten = \"\"\n\n")
	if cfg.PostgresDSN != "" {
		fmt.Fprintf(&b, "[store]\ndriver = \"postgres\"\ndsn = %s\n\n", q(cfg.PostgresDSN))
	} else {
		fmt.Fprintf(&b, "[store]\npath = %s\n\n", q(filepath.Join(dir, "mailgate.db")))
	}
	fmt.Fprintf(&b, "[media]\ndir = %s\n\n", q(filepath.Join(dir, "media")))
	fmt.Fprintf(&b, "[log]\nlevel = \"info\"\nformat = \"text\"\n\n")
	fmt.Fprintf(&b, "[[channel]]\nname = \"support\"\n\n")
	fmt.Fprintf(&b, "[channel.userlike]\ninbound_url = %s\ninbound_token = %s\noutbound_token = %s\n\n",
		q(cfg.InboundURL), q(inboundToken), q(outboundToken))
	// The backlog is in the mailbox before mailgate starts: post it all.
	fmt.Fprintf(&b, "[channel.imap]\naddress = %s\nsecurity = \"none\"\nusername = %s\npassword = %s\nstart = \"all\"\n",
		q(cfg.IMAPAddr), q(cfg.User), q(cfg.Password))
	if cfg.After != "" {
		fmt.Fprintf(&b, "after = %s\n", q(cfg.After))
	}
	fmt.Fprintf(&b, "\n[channel.smtp]\naddress = %s\nsecurity = \"none\"\nfrom = %s\nsent_folder = \"\"\n",
		q(cfg.SMTPAddr), q("Support <"+cfg.User+">"))
	if cfg.Coalesce != "" {
		fmt.Fprintf(&b, "coalesce = %s\n", q(cfg.Coalesce))
	}
	// Every benchmark mail is from a fresh address on a domain that has
	// no DNS: sender verification is off, as in the e2e suite.
	fmt.Fprintf(&b, "\n[channel.verify]\nrequire = \"none\"\n\n")
	fmt.Fprintf(&b, "[channel.inbound]\nrate_limit = 1000000\n")
	path = filepath.Join(dir, "mailgate.toml")
	return path, listen, os.WriteFile(path, []byte(b.String()), 0o600)
}

// startMailgate runs bin with the configuration in dir, with a systemd
// notify socket, and samples its RSS until stop. It does not wait for
// READY=1; see waitReady.
func startMailgate(bin, dir string, cfg daemonConfig) (*mailgate, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cfgPath, listen, err := writeConfig(dir, cfg)
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "notify.sock")
	os.Remove(sock)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	g := &mailgate{
		dir:     dir,
		listen:  listen,
		logPath: filepath.Join(dir, "mailgate.log"),
		ready:   make(chan time.Time, 1),
		exited:  make(chan struct{}),
		notify:  conn,
		stopRSS: make(chan struct{}),
	}
	go g.readNotify()
	logf, err := os.OpenFile(g.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		conn.Close()
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "run", "-c", cfgPath)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	g.started = time.Now()
	if err := cmd.Start(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	g.cmd = cmd
	go func() {
		g.waitErr = cmd.Wait()
		close(g.exited)
	}()
	go g.sampleRSS()
	if cfg.Perf {
		perf := exec.Command("perf", "record", "-F", "499", "-g", "-o", filepath.Join(dir, "perf.data"), "-p", strconv.Itoa(cmd.Process.Pid))
		perf.Stdout, perf.Stderr = logf, logf
		if err := perf.Start(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: perf record: %v\n", err)
		} else {
			g.perf = perf
		}
	}
	return g, nil
}

// settleDisk writes every dirty page of the machine to disk (sync(2)
// returns when it is written), so that a timed run starts without the
// kernel's writeback of what the runs before it wrote (the Maildir files
// of the LMTP deliveries, the stores, the media) sharing the disk with its
// fsyncs. Every timed run calls it before its clock starts: the IMAP floor,
// fetchmail, each mailgate daemon, and each run against Postfix (through
// postfixIdle).
func settleDisk() { syscall.Sync() }

// cpuTime is the user+system CPU time the daemon used so far.
func (g *mailgate) cpuTime() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", g.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime+stime from a /proc/PID/stat line (clock ticks
// of 1/100 s, as on every Linux this runs on).
func parseStatCPU(b []byte) (time.Duration, error) {
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no command name")
	}
	f := strings.Fields(s[i+1:])
	// After the name: state is field 3; utime and stime are 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("/proc stat: too few fields")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("/proc stat: bad utime or stime")
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// readNotify waits for READY=1 on the notify socket.
func (g *mailgate) readNotify() {
	buf := make([]byte, 4096)
	sent := false
	for {
		n, _, err := g.notify.ReadFromUnix(buf)
		if err != nil {
			return
		}
		if !sent && bytes.Contains(buf[:n], []byte("READY=1")) {
			g.ready <- time.Now()
			sent = true
		}
	}
}

// waitReady returns the time from exec to READY=1.
func (g *mailgate) waitReady(timeout time.Duration) (time.Duration, error) {
	select {
	case t := <-g.ready:
		return t.Sub(g.started), nil
	case <-g.exited:
		return 0, fmt.Errorf("mailgate exited before READY=1 (%v); log:\n%s", g.waitErr, g.logTail(20))
	case <-time.After(timeout):
		return 0, fmt.Errorf("mailgate: no READY=1 within %v; log:\n%s", timeout, g.logTail(20))
	}
}

// sampleRSS records the highest VmRSS every 10 ms.
func (g *mailgate) sampleRSS() {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if rss, _, err := g.memory(); err == nil {
			g.mu.Lock()
			g.peakRSS = max(g.peakRSS, rss)
			g.mu.Unlock()
		}
		select {
		case <-g.stopRSS:
			return
		case <-g.exited:
			return
		case <-t.C:
		}
	}
}

// memory reads VmRSS and VmHWM (bytes) from /proc/PID/status.
func (g *mailgate) memory() (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	return parseStatus(b)
}

// parseStatus picks VmRSS and VmHWM out of a /proc/PID/status file.
func parseStatus(b []byte) (rss, hwm int64, err error) {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("/proc status: bad line %q", line)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc status: bad line %q", line)
		}
		if k == "VmRSS" {
			rss = n << 10
		} else {
			hwm = n << 10
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, errors.New("/proc status: no VmRSS or VmHWM")
	}
	return rss, hwm, nil
}

// peak is the highest RSS seen: the larger of the sampled VmRSS and VmHWM.
func (g *mailgate) peak() int64 {
	_, hwm, _ := g.memory()
	g.mu.Lock()
	defer g.mu.Unlock()
	return max(g.peakRSS, hwm)
}

// stop ends the daemon with SIGTERM (SIGKILL after 40 s).
func (g *mailgate) stop() error {
	defer g.notify.Close()
	g.stopOnce.Do(func() {
		close(g.stopRSS)
		if g.perf != nil {
			g.perf.Process.Signal(syscall.SIGINT)
			g.perf.Wait()
		}
	})
	select {
	case <-g.exited:
		return g.waitErr
	default:
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
		return g.waitErr
	case <-time.After(40 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.exited
		return errors.New("mailgate did not stop within 40s of SIGTERM")
	}
}

// pid is the daemon's process id.
func (g *mailgate) pid() int { return g.cmd.Process.Pid }

// logTail is the end of the daemon's log.
func (g *mailgate) logTail(n int) string {
	b, _ := os.ReadFile(g.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startMailgate runs the benchmark's binary in b.work/name, once the disk
// has settled (settleDisk).
func (b *bench) startMailgate(name string, cfg daemonConfig) (*mailgate, error) {
	cfg.Perf = b.opts.perf
	settleDisk()
	return startMailgate(b.bin, filepath.Join(b.work, name), cfg)
}
