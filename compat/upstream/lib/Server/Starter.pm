package Server::Starter;
# A stand-in for Server::Starter's Perl interface that runs handover under
# the name start_server instead, so that Server::Starter's own test suite
# (t/ of its distribution) exercises handover: start_server() execs
# $HANDOVER_START_SERVER (a `start_server` symlink to handover) with the
# options as start_server's command line; stop_server() and
# restart_server() run it with --stop / --restart; server_ports() reads
# SERVER_STARTER_PORT as workers do. See compat/upstream/run.sh.
use strict;
use warnings;
use Exporter 'import';

our @EXPORT_OK = qw(start_server restart_server stop_server server_ports);

my @VALUED = qw(interval log_file pid_file dir signal_on_hup signal_on_term
    status_file envdir kill_old_delay auto_restart_interval backlog);

sub _program {
    my $program = $ENV{HANDOVER_START_SERVER}
        or die "HANDOVER_START_SERVER is not set: run compat/upstream/run.sh\n";
    return $program;
}

sub _list { my $v = shift; return () unless defined $v; return ref $v eq 'ARRAY' ? @$v : ($v) }

sub _args {
    my %opts = @_;
    my @args;
    push @args, "--port=$_" for _list($opts{port});
    push @args, "--path=$_" for _list($opts{path});
    for my $name (@VALUED) {
        next unless defined $opts{$name};
        (my $option = $name) =~ tr/_/-/;
        push @args, "--$option=$opts{$name}";
    }
    push @args, '--enable-auto-restart' if $opts{enable_auto_restart};
    if ($opts{daemonize}) {
        push @args, '--daemonize';
        # The module daemonizes without a log file; its script, which
        # handover is, wants one.
        push @args, '--log-file=/dev/null' unless defined $opts{log_file};
    }
    return @args;
}

sub start_server {
    my %opts = @_ == 1 ? %{ $_[0] } : @_;
    my @exec = _list($opts{exec});
    die "mandatory option ``exec'' is missing or not an array\n" unless @exec;
    exec { _program() } 'start_server', _args(%opts), '--', @exec;
    die "cannot execute " . _program() . ": $!\n";
}

sub _run {
    my ($action, %opts) = @_;
    my @args = ("--$action");
    push @args, "--pid-file=$opts{pid_file}" if defined $opts{pid_file};
    push @args, "--status-file=$opts{status_file}" if defined $opts{status_file};
    my $status = system { _program() } 'start_server', @args;
    die "start_server --$action failed\n" if $status != 0;
    return;
}

sub stop_server {
    my %opts = @_ == 1 ? %{ $_[0] } : @_;
    _run('stop', %opts);
}

sub restart_server {
    my %opts = @_ == 1 ? %{ $_[0] } : @_;
    _run('restart', %opts);
}

sub server_ports {
    die "no environment variable SERVER_STARTER_PORT. Did you start the process using server_starter?\n"
        unless defined $ENV{SERVER_STARTER_PORT};
    my %ports;
    for my $pair (split /;/, $ENV{SERVER_STARTER_PORT}) {
        my ($addr, $fd) = $pair =~ /^(.*)=(\d+)$/ or next;
        $ports{$addr} = $fd;
    }
    return \%ports;
}

1;
