#!/usr/bin/perl
# SPDX-License-Identifier: GPL-2.0-or-later
# Looks names up one after another with Net::DNS on one resolver object and
# prints per name the addresses or the error (the answer's rcode, NODATA,
# "CNAME only" or Net::DNS's error string) and how long it took, as JSON lines.
#
#   netdns_client.pl SERVER udp|tcp TIMEOUT|- RETRY|- A:NAME|AAAA:NAME ...
#
# TIMEOUT (seconds) and RETRY "-" keep Net::DNS's defaults.
use strict;
use warnings;
use JSON::PP;
use Net::DNS;
use Time::HiRes qw(time);

my ($server, $transport, $timeout, $retry, @queries) = @ARGV;
my %options = (nameservers => [$server], usevc => $transport eq 'tcp' ? 1 : 0, defnames => 0, dnsrch => 0);
if ($timeout ne '-') {
    @options{qw(udp_timeout tcp_timeout retrans)} = ($timeout, $timeout, $timeout);
}
$options{retry} = $retry if $retry ne '-';
my $resolver = Net::DNS::Resolver->new(%options);
my $json = JSON::PP->new->canonical;
$| = 1;
for my $query (@queries) {
    my ($type, $name) = split /:/, $query, 2;
    my $started = time;
    my $packet = $resolver->send($name, $type);
    my %line = (name => $name, type => $type, addresses => []);
    if (!$packet) {
        $line{error} = $resolver->errorstring;
    } else {
        $line{addresses} = [map { $_->address } grep { $_->type eq $type } $packet->answer];
        my $rcode = $packet->header->rcode;
        my $cname = grep { $_->type eq 'CNAME' } $packet->answer;
        $line{error} = $rcode ne 'NOERROR' ? $rcode : @{$line{addresses}} ? undef : $cname ? 'CNAME only' : 'NODATA';
        delete $line{error} unless defined $line{error};
    }
    $line{seconds} = sprintf('%.3f', time - $started) + 0;
    print $json->encode(\%line), "\n";
}
