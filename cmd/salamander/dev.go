package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/salamander-chat/salamander/internal/gateway"
	"github.com/salamander-chat/salamander/internal/secrets"
	"github.com/salamander-chat/salamander/internal/site"
)

// devSites are the sites `salamander dev` runs.
var devSites = []string{"a", "b", "c"}

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "salamander-data", "data directory; each site uses DATA/SITE")
	host := fs.String("host", "127.0.0.1", "address every site listens on")
	httpPort := fs.Int("http-port", 8081, "site a's HTTP port; b and c use the next ones")
	natsPort := fs.Int("nats-port", 4221, "site a's NATS client port; b and c use the next ones")
	clusterPort := fs.Int("cluster-port", 6221, "site a's NATS cluster port; b and c use the next ones")
	partitions := fs.Int("partitions", 6, "room partitions when creating a new cluster")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	recordSlots := fs.Int("record-slots", 0, "replicated records the three sites' process keeps in flight, 1-1024 (0: one per core)")
	pprofAddr := fs.String("pprof", "", "serve Go profiles of the three sites' process at http://ADDR/debug/pprof/; a bare :PORT binds loopback (default: off)")
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	if err := setRecordSlots(*recordSlots); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	if *pprofAddr != "" {
		stop, url, err := startPprof(*pprofAddr, log)
		if err != nil {
			return err
		}
		defer stop()
		fmt.Fprintf(stdout, "profiles at %s\n", url)
	}
	var infos []gateway.SiteInfo
	for i, n := range devSites {
		infos = append(infos, gateway.SiteInfo{Name: n, URL: fmt.Sprintf("http://%s:%d", *host, *httpPort+i)})
	}
	// The dev cluster's links stay plain on loopback, but its NATS servers
	// still require credentials: the secure path is the one exercised.
	privateFiles()
	secretsDir := filepath.Join(*data, "secrets")
	if _, err := os.Stat(secrets.AdminFile(secretsDir)); errors.Is(err, os.ErrNotExist) {
		if err := secrets.Generate(secretsDir, secrets.Options{Sites: devSites}); err != nil {
			return err
		}
	}
	var cfgs []site.Config
	for i, n := range devSites {
		cfg := site.DefaultConfig(n, filepath.Join(*data, n))
		sec, err := secrets.LoadSite(secrets.SiteFile(secretsDir, n))
		if err != nil {
			return fmt.Errorf("dev: %w", err)
		}
		cfg.Secrets = sec
		cfg.HTTPAddr = fmt.Sprintf("%s:%d", *host, *httpPort+i)
		cfg.NATS.ClientAddr = fmt.Sprintf("%s:%d", *host, *natsPort+i)
		cfg.NATS.ClusterAddr = fmt.Sprintf("%s:%d", *host, *clusterPort+i)
		for j := range devSites {
			if j != i {
				cfg.NATS.Routes = append(cfg.NATS.Routes, fmt.Sprintf("%s:%d", *host, *clusterPort+j))
			}
		}
		cfg.Partitions = *partitions
		cfg.Sites = infos
		cfg.Logger = log
		cfgs = append(cfgs, cfg)
	}
	var sites []*site.Site
	defer func() {
		var wg sync.WaitGroup
		for _, s := range sites {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.Close()
			}()
		}
		wg.Wait()
	}()
	for _, cfg := range cfgs {
		s, err := site.Start(ctx, cfg)
		if err != nil {
			return err
		}
		sites = append(sites, s)
	}
	fmt.Fprintf(stdout, "salamander dev: three sites starting (data in %s)\n", *data)
	for _, s := range sites {
		if err := s.Ready(ctx); err != nil {
			return err
		}
	}
	var urls, natsURLs []string
	for i, s := range sites {
		fmt.Fprintf(stdout, "  site %s  %s   NATS nats://%s (user %s; password in %s)\n", s.Name(), s.URL(),
			cfgs[i].NATS.ClientAddr, cfgs[i].Secrets.NATSUser, secrets.SiteFile(secretsDir, s.Name()))
		urls = append(urls, s.URL())
		natsURLs = append(natsURLs, "nats://"+cfgs[i].NATS.ClientAddr)
	}
	// The dev cluster holds its admin credential, so it upgrades what an
	// older version made (the cluster bucket, written-once now) as any
	// `salamander admin` command would: its sites log an error at every
	// start until that is done.
	if err := upgradeAsAdmin(ctx, secrets.AdminFile(secretsDir), natsURLs); err != nil {
		log.Warn("dev: could not upgrade the cluster's streams with the admin credential", "err", err)
	}
	// With this cluster's own NATS URLs: another dev cluster on the
	// default ports must not be the one the hint reaches.
	fmt.Fprintf(stdout, "  operators: salamander admin --creds %s --nats %s leaders\n", secrets.AdminFile(secretsDir),
		strings.Join(natsURLs, ","))
	fmt.Fprintf(stdout, "  web messenger: %s/ (any site's URL)\n", urls[0])
	fmt.Fprintf(stdout, "  ops console: %s/ops (after salamander admin set-role NAME operator); status page: %s/status\n", urls[0], urls[0])
	fmt.Fprintf(stdout, "ready. try: %s\n", devChatHint(urls))
	fmt.Fprintln(stdout, "press Ctrl-C to stop")
	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping…")
	return nil
}

// devChatHint is the chat command dev suggests once ready: one that runs
// as printed (chat refuses to start without a password).
func devChatHint(urls []string) string {
	return "SALAMANDER_PASSWORD=correct-horse salamander chat --sites " + strings.Join(urls, ",") + " --user alice --signup"
}

// upgradeAsAdmin upgrades the streams and the cluster bucket an older
// version created, with the admin credential (the only one that may
// change a stream's settings), as the admin CLI does; it creates nothing.
func upgradeAsAdmin(ctx context.Context, creds string, urls []string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	list := strings.Join(urls, ",")
	store, err := (&connFlags{urls: &list, creds: &creds}).open(ctx, "salamander-dev")
	if err != nil {
		return err
	}
	defer store.Close()
	return store.UpgradeStreams(ctx)
}
