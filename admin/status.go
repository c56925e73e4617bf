package admin

import (
	"net/http"
	"net/http/pprof"

	"github.com/gorilla/mux"
)

// StatusAPI is the status listener (Kong's :8100): /status, /status/ready
// for load balancers, and Go's profiler under /debug/pprof.
func (s *Server) StatusAPI(ready func() error) http.Handler {
	r := mux.NewRouter()
	r.HandleFunc("/status", s.status).Methods("GET", "HEAD")
	r.HandleFunc("/status/ready", func(w http.ResponseWriter, req *http.Request) {
		if err := ready(); err != nil {
			message(w, 503, err.Error())
			return
		}
		message(w, 200, "ready")
	}).Methods("GET", "HEAD")
	if s.cfg.Metrics != nil {
		r.Handle("/metrics", s.cfg.Metrics).Methods("GET")
	}
	r.HandleFunc("/debug/pprof/", pprof.Index)
	r.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	r.HandleFunc("/debug/pprof/profile", pprof.Profile)
	r.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	r.HandleFunc("/debug/pprof/trace", pprof.Trace)
	r.PathPrefix("/debug/pprof/").HandlerFunc(pprof.Index)
	r.NotFoundHandler = http.HandlerFunc(notFoundHandler)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Server", "kong/"+KongVersion)
		r.ServeHTTP(w, req)
	})
}
