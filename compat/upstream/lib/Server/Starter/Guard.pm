package Server::Starter::Guard;
# Runs its code when it goes out of scope (the tests' clean-up).
use strict;
use warnings;

sub new {
    my ($class, $handler) = @_;
    return bless { handler => $handler }, $class;
}

sub dismiss { $_[0]{handler} = undef }

sub DESTROY {
    my $self = shift;
    $self->{handler}->() if $self->{handler};
}

1;
