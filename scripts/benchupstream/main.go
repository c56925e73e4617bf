// Command benchupstream is the origin server used by scripts/bench.sh. It
// answers every request with 200, Content-Type: application/json and a fixed
// ~100-byte JSON body, doing as little work as possible so that the proxy in
// front of it, not the origin, dominates the measurement.
package main

import (
	"flag"
	"log"

	"github.com/valyala/fasthttp"
)

// body is fixed and about 100 bytes, roughly a small API response.
var body = []byte(`{"status":"ok","service":"benchupstream","message":"hello from the benchmark upstream","n":42}` + "\n")

func handler(ctx *fasthttp.RequestCtx) {
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:18080", "address to listen on")
	flag.Parse()

	s := &fasthttp.Server{
		Handler: handler,
		Name:    "benchupstream",
		// Keep-alive connections from the proxies must never be closed by
		// the origin: a reconnect would be charged to whichever proxy hit it.
		MaxRequestsPerConn: 0,
		Concurrency:        64 * 1024,
	}
	log.Printf("benchupstream listening on %s", *listen)
	if err := s.ListenAndServe(*listen); err != nil {
		log.Fatal(err)
	}
}
