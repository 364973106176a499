/*
 * berth/pause: the process that holds a pod sandbox's namespaces while the pod's
 * containers come and go. As PID 1 of the sandbox it reaps any zombie handed to it and
 * exits at once on SIGINT or SIGTERM; otherwise it sleeps. Built statically by
 * scripts/build-images (gcc -static), so the image needs nothing else.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signo) {
    (void)signo;
    _exit(0);
}

static void reap(int signo) {
    (void)signo;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        puts("berth pause 1");
        return 0;
    }
    if (getpid() != 1) {
        fprintf(stderr, "pause: not PID 1 of a sandbox; running anyway\n");
    }
    struct sigaction on_stop = {0};
    on_stop.sa_handler = stop;
    sigaction(SIGINT, &on_stop, NULL);
    sigaction(SIGTERM, &on_stop, NULL);
    struct sigaction on_child = {0};
    on_child.sa_handler = reap;
    on_child.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &on_child, NULL);
    for (;;) {
        pause();
    }
}
