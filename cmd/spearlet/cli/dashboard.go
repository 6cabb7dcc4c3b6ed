package cli

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/spear-go/spear/client"
)

// dashboardInfo is what dashboard prints.
type dashboardInfo struct {
	URL string `json:"url"`
	// Opened is the file the browser was started on (--open).
	Opened string `json:"opened,omitempty"`
}

func newDashboardCmd() *cobra.Command {
	var (
		d    *daemonFlags
		open bool
	)
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Print the address that logs a browser in to the daemon's dashboard",
		Long: `Print the address that logs a browser in to the daemon's dashboard:
http://ADDR/ui/?token=TOKEN, the daemon's TCP API address with its token,
which the daemon trades for a cookie on the first visit. The address and
token are found as the other client commands find them: --addr (or
$SPEARLET_ADDR; a browser cannot use the unix socket, so here the default
is 127.0.0.1:7480, api.http_addr's default), and the token in the state
directory (or $SPEARLET_TOKEN). It checks first that the daemon answers
there and takes the token (exit 3 when nothing listens).

The address holds the token: it is printed to this user only, who can
read the token file already, and it stays in the browser's history.

With --open, it also starts the browser (xdg-open, or open on macOS) on
a page in this user's cache directory (0600) that sends it on to the
address, so that the token is not in any process's command line.`,
		Args: cobra.NoArgs,
	}
	out := addOutput(cmd, "text", "json", "yaml")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c := d.client()
		defaulted := c.Addr == ""
		if defaulted {
			c.Addr = client.DefaultAddr
		}
		defer c.CloseIdleConnections()
		link, err := c.DashboardURL()
		if err != nil {
			if _, ok := errors.AsType[*client.SocketError](err); ok {
				return fmt.Errorf("%w; pass it with --addr HOST:PORT (or $%s)", err, client.EnvAddr)
			}
			return err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), healthTimeout)
		defer cancel()
		if err := c.Live(ctx); err != nil {
			if u, ok := errors.AsType[*unreachableError](d.explain(err)); ok && defaulted {
				u.hint = fmt.Sprintf("A browser needs the daemon's TCP API address: when it listens elsewhere than %s (api.http_addr), pass that with --addr (or $%s).",
					client.DefaultAddr, client.EnvAddr)
				return u
			}
			return err
		}
		info := dashboardInfo{URL: link}
		var openErr error
		if open {
			info.Opened, openErr = openBrowser(link)
		}
		if err := out.print(cmd.OutOrStdout(), info, func(w io.Writer) error {
			_, err := fmt.Fprintln(w, link)
			return err
		}); err != nil {
			return err
		}
		if openErr != nil {
			// The address is printed: open it by hand.
			fmt.Fprintf(cmd.ErrOrStderr(), "spearlet: %v; open the address above in a browser\n", openErr)
		}
		return nil
	}
	cmd.Flags().BoolVar(&open, "open", false, "also start the browser on it (xdg-open, or open on macOS)")
	d = clientCommand(cmd)
	return cmd
}

// browserOpener names the program that opens a file in the user's
// browser.
func browserOpener() string {
	if runtime.GOOS == "darwin" {
		return "open"
	}
	return "xdg-open"
}

// openBrowser starts the user's browser on link and returns the page it
// was started on. The browser is given a file that sends it on to link,
// not link itself: a command line is readable by every user of the
// machine (ps, /proc), the file only by this one. The file stays (one, in
// the user's cache directory, rewritten every time), since the browser
// may read it after this command has exited.
func openBrowser(link string) (string, error) {
	opener, err := exec.LookPath(browserOpener())
	if err != nil {
		return "", fmt.Errorf("no %s to start a browser with", browserOpener())
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "spearlet")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	page := filepath.Join(dir, "dashboard.html")
	// Removed first, so that the file is made anew with mode 0600 even
	// when an older one had another.
	if err := os.Remove(page); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	f, err := os.OpenFile(page, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	q := html.EscapeString(link)
	_, err = fmt.Fprintf(f, `<!DOCTYPE html>
<meta charset="utf-8">
<meta name="referrer" content="no-referrer">
<meta http-equiv="refresh" content="0;url=%s">
<title>spearlet dashboard</title>
<p><a href="%s">Open the spearlet dashboard</a></p>
`, q, q)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	fileURL := (&url.URL{Scheme: "file", Path: page}).String()
	if err := exec.Command(opener, fileURL).Start(); err != nil {
		return "", fmt.Errorf("start %s: %w", opener, err)
	}
	return page, nil
}
