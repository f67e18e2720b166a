#!/usr/bin/perl
# Verify the DKIM signatures of the message on stdin with Mail::DKIM, asking the DNS server HOST PORT.
# Prints one line per signature: "RESULT d=DOMAIN s=SELECTOR (detail)"; exit 0 when all pass.
use strict;
use warnings;
use Mail::DKIM::Verifier;
use Net::DNS::Resolver;

my ($host, $port) = @ARGV;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(nameservers => [$host], port => $port, recurse => 1,
                                                  udp_timeout => 10, retry => 3));
my $v = Mail::DKIM::Verifier->new();
binmode STDIN;
while (<STDIN>) { s/\r?\n\z/\r\n/; $v->PRINT($_); }
$v->CLOSE;
my $ok = 1;
my @sigs = $v->signatures;
$ok = 0 unless @sigs;
foreach my $s (@sigs) {
    printf "%s d=%s s=%s (%s)\n", $s->result, $s->domain, $s->selector, $s->result_detail;
    $ok = 0 unless $s->result eq 'pass';
}
print "none\n" unless @sigs;
exit($ok ? 0 : 1);
