#!/usr/bin/perl
# workload.pl - a deterministic Perl allocation workload for perl.sh: hashes,
# arrays, regexes, string building and sorting, printing results that must
# be the same with and without libtallymalloc.so.  Keys are always sorted
# before printing, so Perl's per-process hash order does not matter.

use strict;
use warnings;

# A small linear congruential generator: the same numbers on every run.
my $seed = 12345;
sub rnd { $seed = ($seed * 1103515245 + 12345) % 2147483648; return $seed; }

sub checksum {
    my $sum = 0;
    for my $s (@_) {
        $sum = ($sum * 31 + unpack('%32C*', $s) + length $s) % 4294967291;
    }
    return $sum;
}

# Hashes of arrays and hashes, built and dropped.
my $total = 0;
for my $round (1 .. 20) {
    my %h;
    for my $i (1 .. 3000) {
        my $k = sprintf 'k%05d', rnd() % 5000;
        push @{ $h{$k}{list} }, $i;
        $h{$k}{count}++;
        $h{$k}{name} //= "name-$k-$round";
    }
    my @big = grep { $h{$_}{count} > 1 } sort keys %h;
    $total += scalar(@big) + $h{ $big[0] }{count};
    delete @h{ @big[0 .. $#big / 2] };
    $total += keys %h;
}
print "hashes $total\n";

# String building and regexes.
my @words = map {
    my $n = 3 + rnd() % 9;
    join '', map { chr(97 + rnd() % 26) } 1 .. $n
} 1 .. 20000;
my $text = join ' ', @words;
my %freq;
$freq{$1}++ while $text =~ /\b([aeiou]\w{2})/g;
my @top = (sort { $freq{$b} <=> $freq{$a} || $a cmp $b } keys %freq)[0 .. 4];
print "regex_top @top $freq{$top[0]}\n";
(my $swapped = $text) =~ s/(\w)(\w*)/\U$2\E$1/g;
my @caps = $swapped =~ /\b([A-Z]{4,})[a-z]\b/g;
print "swapped ", length($swapped), ' ', scalar(@caps), ' ', checksum(@caps[0 .. 9]), "\n";
my @split = split /[aeiou]+/, $text;
print "split ", scalar(@split), ' ', checksum(@split[100 .. 120]), "\n";

my $buf = '';
for my $i (1 .. 50000) {
    $buf .= sprintf('%x,', $i * 2654435761 % 4294967296);
    $buf = substr($buf, -4000) if length($buf) > 8000;
}
print "buffer ", length($buf), ' ', checksum($buf), "\n";

# Sorting: numbers, strings and a Schwartzian transform.
my @nums = map { rnd() % 1000000 } 1 .. 100000;
my @sorted = sort { $a <=> $b } @nums;
my @strs = sort map { "s$_" } @nums[0 .. 29999];
my @by_len = map { $_->[1] }
    sort { $a->[0] <=> $b->[0] or $a->[1] cmp $b->[1] }
    map { [ length($_), $_ ] } @words;
print "sort $sorted[0] $sorted[-1] $sorted[50000] $strs[0] $strs[-1] $by_len[0] $by_len[-1]\n";

# Objects: blessed hashes in a linked structure, dropped at scope exit.
{
    package Item;
    sub new { my ($c, %a) = @_; return bless {%a, kids => []}, $c }
    sub add { my ($s, $k) = @_; push @{ $s->{kids} }, $k; return $k }
    sub weight {
        my $s = shift;
        my $w = $s->{w};
        $w += $_->weight for @{ $s->{kids} };
        return $w;
    }
}
my $weight = 0;
for my $r (1 .. 5) {
    my $root = Item->new(w => $r, name => "root$r");
    my @level = ($root);
    for my $depth (1 .. 6) {
        @level = map { my $p = $_; map { $p->add(Item->new(w => $depth, name => "n$depth.$_")) } 1 .. 3 } @level;
    }
    $weight += $root->weight;
}
print "objects $weight\n";

# A nested data structure round-tripped through a string.
my %deep = map { ("key$_" => { list => [ 1 .. $_ % 17 ], text => 'x' x ($_ % 200) }) } 1 .. 2000;
my $ser = join ';', map { "$_=" . join(',', @{ $deep{$_}{list} }) . ":" . $deep{$_}{text} } sort keys %deep;
my %back = map { my ($k, $v) = split /=/, $_, 2; my ($l, $t) = split /:/, $v, 2; ($k => [ split(/,/, $l), length $t ]) } split /;/, $ser;
my $bsum = 0;
$bsum += $_ for map { @$_ } values %back;
print "serialize ", length($ser), " $bsum ", scalar(keys %back), "\n";
print "done\n";
