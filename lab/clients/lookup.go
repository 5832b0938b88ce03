// SPDX-License-Identifier: GPL-2.0-or-later

// Command lookup looks names up with Go's net.Resolver, one after another, and
// prints per name the addresses or the error and how long it took, as JSON
// lines. GODEBUG=netdns=go selects Go's own stub resolver, netdns=cgo the C
// library's getaddrinfo; both read /etc/resolv.conf (Go's honours use-vc).
//
//	lookup A:NAME|AAAA:NAME ...
package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"strings"
	"time"
)

type outcome struct {
	Name      string   `json:"name"`
	Type      string   `json:"type"`
	Seconds   float64  `json:"seconds"`
	Addresses []string `json:"addresses"`
	Error     string   `json:"error,omitempty"`
	Detail    string   `json:"detail,omitempty"`
}

func main() {
	encoder := json.NewEncoder(os.Stdout)
	for _, query := range os.Args[1:] {
		qtype, name, _ := strings.Cut(query, ":")
		network := "ip4"
		if qtype == "AAAA" {
			network = "ip6"
		}
		// The bound is only a safety net; the resolver's own timeouts decide.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		started := time.Now()
		addresses, err := net.DefaultResolver.LookupIP(ctx, network, name)
		cancel()
		result := outcome{Name: name, Type: qtype, Seconds: time.Since(started).Seconds(), Addresses: []string{}}
		for _, address := range addresses {
			result.Addresses = append(result.Addresses, address.String())
		}
		if err != nil {
			result.Error, result.Detail = classify(err), err.Error()
		}
		encoder.Encode(result)
	}
}

// classify names the error the way a Go program can tell errors apart.
func classify(err error) string {
	var dnsError *net.DNSError
	var addressError *net.AddrError
	switch {
	case errors.As(err, &addressError):
		return "no-data" // answered, but with no address of the family asked for
	case !errors.As(err, &dnsError):
		return "other"
	case dnsError.IsNotFound:
		return "not-found"
	case strings.Contains(dnsError.Err, "No address associated with hostname"):
		return "no-data" // cgo: getaddrinfo's EAI_NODATA, which Go 1.19 does not count as not found
	case dnsError.IsTimeout:
		return "timeout"
	case dnsError.IsTemporary:
		return "temporary"
	default:
		return "failure"
	}
}
