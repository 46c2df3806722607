"""
Tests of twisted-stream.

The convention that keeps this suite green in any order under both pytest and
trial: every test is a method of a L{twisted.trial.unittest} test case
(C{SynchronousTestCase} for logic on fakes and L{task.Clock}, C{TestCase}
where real sockets and processes are involved). No test is a plain pytest
function: pytest-twisted runs each of those inside its own run of the global
reactor, after which trial test cases on real sockets fail as unclean.
C{conftest.py} refuses to collect one.
"""
